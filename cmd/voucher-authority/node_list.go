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
	// Flagged: the node forked its chain; its records are refused until
	// an operator resolves it.
	Flagged       bool       `json:"flagged"`
	LastWindowEnd *time.Time `json:"last_window_end"` // null before the first record
}

// nodeListCmd lists the registry: what the authority accepts records
// from, and how far each node's chain has come.
func nodeListCmd() *cobra.Command {
	c := leaf("list", "list the registered nodes: GPUs, active keys, chain head, flags")
	db := dbFlag(c)
	format := formatFlag(c, "table", "json")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		if !checkFormat(stderr, "node list", *format, "table", "json") {
			return exitUsage
		}
		return withStore(ctx, *db, stderr, func(st *store.Store) error {
			nodes, err := st.Nodes(ctx, time.Now())
			if err != nil {
				return err
			}
			if *format == "json" {
				out := make([]nodeListJSON, len(nodes))
				for i, n := range nodes {
					out[i] = nodeListJSON{ID: n.ID, Provider: n.Provider, GPUs: nonNil(n.GPUs), ActiveKeys: nonNil(n.ActiveKeys),
						HeadSeq: n.HeadSeq, Flagged: n.Forked}
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
				}
				flagged := "-"
				if n.Forked {
					flagged = "forked"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", oneLine(n.ID), oneLine(n.Provider), dash(strings.Join(gpus, ", ")),
					dash(strings.Join(n.ActiveKeys, ", ")), strconv.FormatUint(n.HeadSeq, 10), flagged, dash(formatSeconds(n.LastWindowEnd)))
			}
			return tw.Flush()
		})
	})
}
