package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// withRegistry runs fn on the store like withStore, but exits 64 when the
// registry refuses the input (a name, UUID or time its rules refuse; an
// unfork of a node that is not flagged): a usage error, as a bad flag is.
// An unknown node or key, a GPU another node holds, or a failing store
// stay 1.
func withRegistry(ctx context.Context, db string, stderr io.Writer, fn func(st *store.Store) error) int {
	var ferr error
	code := withStore(ctx, db, stderr, func(st *store.Store) error {
		ferr = fn(st)
		return ferr
	})
	if code != exitOK && (errors.Is(ferr, store.ErrInvalidRegistration) || errors.Is(ferr, store.ErrNotFlagged)) {
		return exitUsage
	}
	return code
}

// stamp prints an instant exactly, to the millisecond the store keeps, in
// UTC: a value an operator can give back to --since or --at.
func stamp(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano) }

func nodeRemoveGPUCmd() *cobra.Command {
	c := leaf("remove-gpu", "end a GPU's registration to a node (to add it to another, or retire it)")
	db := dbFlag(c)
	node := c.Flags().String("node", "", "node id the GPU is registered to")
	gpu := c.Flags().String("gpu", "", "the GPU's `UUID`")
	at := c.Flags().String("at", "", "when the registration ends (`TIME`; default now; not in the future, nor before the "+
		"latest window of the node's records of the GPU already stored): its records ending after it are refused")
	required(c, "node", "gpu")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		uuid, err := protocol.CanonicalGPUUUID(*gpu)
		if err != nil {
			fmt.Fprintf(stderr, "node remove-gpu: --gpu: %v\n", err)
			return exitUsage
		}
		now := time.Now()
		when := now.Truncate(time.Millisecond)
		if *at != "" {
			if when, err = timeFlag("at", *at); err != nil {
				fmt.Fprintf(stderr, "node remove-gpu: %v\n", err)
				return exitUsage
			}
		}
		return withRegistry(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.RemoveGPU(ctx, *node, uuid, when, now); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "removed GPU %s from node %s at %s: the node's records of it ending after then are refused "+
				"gpu-not-registered; register it elsewhere with node add-gpu --since %s (or later)\n", uuid, *node, stamp(when), stamp(when))
			return nil
		})
	})
}

func nodeUnforkCmd() *cobra.Command {
	c := leaf("unfork", "clear a node's flag once the second copy that signed is stopped")
	db := dbFlag(c)
	node := c.Flags().String("node", "", "node id")
	reason := c.Flags().String("reason", "", "why the flag may be cleared (kept in the audit trail with the instances heard from)")
	required(c, "node", "reason")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		if strings.TrimSpace(*reason) == "" {
			fmt.Fprintln(stderr, "node unfork: --reason must say why")
			return exitUsage
		}
		return withRegistry(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.Unfork(ctx, *node, *reason, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "cleared the flag of node %s by %s; a copy that signs again flags it again (audit actions --node %s)\n",
				*node, store.ActorOf(ctx), *node)
			return nil
		})
	})
}

// nodeInstancesJSON is node instances --format json.
type nodeInstancesJSON struct {
	Node      string           `json:"node"`
	Flagged   bool             `json:"flagged"`
	Instances []store.Instance `json:"instances"`
}

func nodeInstancesCmd() *cobra.Command {
	c := leaf("instances", "the copies of a node's agent the authority heard from, with batches accepted and refused")
	db := dbFlag(c)
	node := c.Flags().String("node", "", "node id")
	format := formatFlag(c, "table", "json")
	required(c, "node")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		if !checkFormat(stderr, "node instances", *format, "table", "json") {
			return exitUsage
		}
		return withStore(ctx, *db, stderr, func(st *store.Store) error {
			n, err := st.Node(ctx, *node)
			if err != nil {
				return err
			}
			ins, err := st.NodeInstances(ctx, *node)
			if err != nil {
				return err
			}
			if *format == "json" {
				return printJSON(stdout, nodeInstancesJSON{Node: n.ID, Flagged: n.Forked, Instances: nonNil(ins)})
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "instance\tfirst seen (UTC+8)\tlast seen (UTC+8)\taccepted batches\trefused batches")
			for _, in := range ins {
				id := oneLine(in.ID)
				if id == "" {
					id = "(none sent)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id, formatSeconds(in.FirstSeen), formatSeconds(in.LastSeen),
					strconv.FormatInt(in.Accepted, 10), strconv.FormatInt(in.Refused, 10))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(ins) == 0 {
				fmt.Fprintf(stdout, "no batch of node %s received yet\n", n.ID)
			}
			if n.Forked {
				fmt.Fprintf(stdout, "node %s is flagged: a second copy signed (audit list --node %s --cause second-signer); "+
					"stop it, then node unfork --node %s --reason WHY\n", n.ID, n.ID, n.ID)
			} else {
				fmt.Fprintf(stdout, "node %s is not flagged\n", n.ID)
			}
			return nil
		})
	})
}
