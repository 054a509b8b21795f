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
	d := dbLeaf("remove-gpu", "end a GPU's registration to a node (to add it to another, or retire it)")
	node := d.Flags().String("node", "", "node id the GPU is registered to")
	gpu := d.Flags().String("gpu", "", "the GPU's `UUID`")
	at := d.Flags().String("at", "", "when the registration ends (`TIME`; default now; not in the future, nor before the "+
		"latest window of the node's records of the GPU already stored): its records ending after it are refused")
	required(d.Command, "node", "gpu")
	var uuid string
	var now, when time.Time
	return d.run(withRegistry, func() (err error) {
		if uuid, err = protocol.CanonicalGPUUUID(*gpu); err != nil {
			return fmt.Errorf("--gpu: %v", err)
		}
		now = time.Now()
		when = now.Truncate(time.Millisecond)
		if *at != "" {
			when, err = timeFlag("at", *at)
		}
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.RemoveGPU(ctx, *node, uuid, when, now), stdout, "removed GPU %s from node %s at %s: the node's records of it ending after then are refused "+
			"gpu-not-registered; register it elsewhere with node add-gpu --since %s (or later)\n", uuid, *node, stamp(when), stamp(when))
	})
}

func nodeUnforkCmd() *cobra.Command {
	d := dbLeaf("unfork", "clear a node's flag once the second copy that signed is stopped")
	node := nodeFlag(d)
	reason := d.Flags().String("reason", "", "why the flag may be cleared (kept in the audit trail with the instances heard from)")
	required(d.Command, "reason")
	return d.run(withRegistry, func() error {
		if strings.TrimSpace(*reason) == "" {
			return errors.New("--reason must say why")
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.Unfork(ctx, *node, *reason, time.Now()), stdout,
			"cleared the flag of node %s by %s; a copy that signs again flags it again (audit actions --node %s)\n", *node, store.ActorOf(ctx), *node)
	})
}

// nodeInstancesJSON is node instances --format json.
type nodeInstancesJSON struct {
	Node      string           `json:"node"`
	Flagged   bool             `json:"flagged"`
	Instances []store.Instance `json:"instances"`
}

func nodeInstancesCmd() *cobra.Command {
	d := dbLeaf("instances", "the copies of a node's agent the authority heard from, with batches accepted and refused", "table", "json")
	node := nodeFlag(d)
	return d.run(withStore, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		n, err := st.Node(ctx, *node)
		if err != nil {
			return err
		}
		ins, err := st.NodeInstances(ctx, *node)
		if err != nil {
			return err
		}
		if *d.format == "json" {
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
}
