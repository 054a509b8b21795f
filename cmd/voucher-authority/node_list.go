package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/store"
)

// nodeListJSON is one node of node list --format json.
type nodeListJSON struct {
	ID         string      `json:"id"`
	Provider   string      `json:"provider"`
	GPUs       []store.GPU `json:"gpus"`
	ActiveKeys []string    `json:"active_keys"`
	HeadSeq    uint64      `json:"head_seq"`
	// Flagged: a second copy of the node signed (second-signer); the
	// chain stored first keeps delivering, and node unfork clears the
	// flag once the copy is stopped.
	Flagged       bool       `json:"flagged"`
	LastWindowEnd *time.Time `json:"last_window_end"` // null before the first record
	// Instances are the copies of the node's agent the authority heard
	// from (node instances shows them alone).
	Instances []store.Instance `json:"instances"`
}

// nodeListCmd lists the registry: what the authority accepts records
// from, and how far each node's chain has come.
func nodeListCmd() *cobra.Command {
	d := dbLeaf("list", "list the registered nodes: GPUs (retired ones marked), active keys, chain head, flag", "table", "json")
	return d.run(withStore, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		nodes, err := st.Nodes(ctx, time.Now())
		if err != nil {
			return err
		}
		if *d.format == "json" {
			out := make([]nodeListJSON, len(nodes))
			for i, n := range nodes {
				out[i] = nodeListJSON{ID: n.ID, Provider: n.Provider, GPUs: nonNil(n.GPUs), ActiveKeys: nonNil(n.ActiveKeys),
					HeadSeq: n.HeadSeq, Flagged: n.Forked, Instances: nonNil(n.Instances)}
				if !n.LastWindowEnd.IsZero() {
					out[i].LastWindowEnd = &n.LastWindowEnd
				}
			}
			return printJSON(stdout, out)
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "id\tprovider\tGPUs (model)\tactive keys\thead seq\tflagged\tlast window end (UTC+8)")
		for _, n := range nodes {
			gpus := make([]string, len(n.GPUs))
			for i, g := range n.GPUs {
				gpus[i] = g.UUID + " (" + g.Model + ")"
				if !g.Retired.IsZero() {
					gpus[i] = g.UUID + " (" + g.Model + ", retired " + formatSeconds(g.Retired) + ")"
				}
			}
			flagged := "-"
			if n.Forked {
				flagged = fmt.Sprintf("second signer (%d instances heard from)", len(n.Instances))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", oneLine(n.ID), oneLine(n.Provider), dash(strings.Join(gpus, ", ")),
				dash(strings.Join(n.ActiveKeys, ", ")), strconv.FormatUint(n.HeadSeq, 10), flagged, dash(formatSeconds(n.LastWindowEnd)))
		}
		return tw.Flush()
	})
}
