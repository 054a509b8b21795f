package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/store"
)

// operatorActions are the actions the audit trail of operator actions
// names (audit actions --action).
var operatorActions = []string{
	store.ActionRegister, store.ActionAddGPU, store.ActionRemoveGPU, store.ActionUnfork,
	store.ActionKeyRotate, store.ActionKeyRevoke, store.ActionReviewApprove, store.ActionReviewReject,
}

func auditActionsCmd() *cobra.Command {
	d := dbLeaf("actions", "list operator actions (registry changes, review decisions), newest first", "table", "json")
	fs := d.Flags()
	node := fs.String("node", "", "only this node's")
	act := fs.String("action", "", `only this action: "`+strings.Join(operatorActions, `", "`)+`"`)
	limit := fs.String("limit", "", fmt.Sprintf("at most this many, newest first (default and most %d)", store.MaxActionLimit))
	_ = d.RegisterFlagCompletionFunc("action", cobra.FixedCompletions(operatorActions, cobra.ShellCompDirectiveNoFileComp))
	var f store.ActionFilter
	return runList(d, withStore, func() (err error) {
		f = store.ActionFilter{Node: *node, Action: *act}
		if f.Action != "" && !knownAction(f.Action) {
			return fmt.Errorf("--action %q: want one of %q", f.Action, operatorActions)
		}
		f.Limit, err = limitFlag(*limit, store.MaxActionLimit)
		return err
	}, func(ctx context.Context, st *store.Store) ([]store.OperatorAction, error) {
		return st.OperatorActions(ctx, f)
	}, []string{"id", "at (UTC+8)", "actor", "action", "node", "details"}, func(a store.OperatorAction) []string {
		return []string{strconv.FormatInt(a.ID, 10), formatSeconds(a.At), oneLine(a.Actor), a.Action,
			dash(oneLine(a.Node)), oneLine(string(a.Details))}
	})
}

func knownAction(a string) bool {
	for _, k := range operatorActions {
		if a == k {
			return true
		}
	}
	return false
}
