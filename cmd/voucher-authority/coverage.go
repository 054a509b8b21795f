package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/coverage"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// coverageCmd prints how much of a period each selected GPU's records
// cover, until now, and the holes (GET /v1/admin/coverage from the
// database).
func coverageCmd() *cobra.Command {
	d := dbLeaf("coverage", "how much of a period each GPU's records cover, and the holes", "table", "json", "csv")
	fs := d.Flags()
	provider := fs.String("provider", "", "only this provider's GPUs")
	node := fs.String("node", "", "only this node's GPUs")
	gpu := fs.String("gpu", "", "only this GPU (UUID)")
	entity := fs.String("entity", "", "only the GPUs the entity's usage ran on in the period (its statement's)")
	p := periodFlags(d.Command)
	var filter store.CoverageFilter
	return d.run(withStore, func() error {
		err := p.parse()
		if err != nil {
			return err
		}
		if filter, err = server.NewCoverageFilter(*provider, *node, *gpu, *entity, p.from, p.to, time.Now()); err != nil {
			return fmt.Errorf("--gpu: %v", err)
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		gpus, err := st.Coverage(ctx, filter)
		if err != nil {
			return err
		}
		switch *d.format {
		case "csv":
			return coverage.WriteCSV(stdout, gpus)
		case "json":
			return printJSON(stdout, server.NewCoverageReport(filter, gpus))
		}
		fmt.Fprintf(stdout, "coverage of %s to %s (UTC+8), until %s\n", formatTime(filter.From), formatTime(filter.To), formatTime(filter.Now))
		return coverageTable(stdout, gpus)
	})
}

// coverageTable prints coverage per GPU in hours (integer arithmetic),
// then the holes listed, in China Standard Time to the second.
func coverageTable(w io.Writer, gpus []coverage.GPU) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "provider\tnode\tGPU\tregistered\texpected h\tcovered h\tuncovered h\tholes")
	var expected, covered int64
	holes := 0
	for _, g := range gpus {
		n := len(g.Holes) + g.MoreHoles
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", g.Provider, g.Node, g.GPU, formatTime(g.Registered),
			protocol.FormatHours(g.ExpectedMillis), protocol.FormatHours(g.CoveredMillis), protocol.FormatHours(g.UncoveredMillis()), n)
		expected += g.ExpectedMillis
		covered += g.CoveredMillis
		holes += n
	}
	fmt.Fprintf(tw, "total\t\t\t\t%s\t%s\t%s\t%d\n", protocol.FormatHours(expected), protocol.FormatHours(covered),
		protocol.FormatHours(expected-covered), holes)
	if err := tw.Flush(); err != nil {
		return err
	}
	if holes == 0 {
		return nil
	}
	tw = newTable(w)
	fmt.Fprintln(tw, "GPU\thole from\tto\thours")
	for _, g := range gpus {
		for _, h := range g.Holes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.GPU, formatSecond(h.From), formatSecond(h.To), protocol.FormatHours(h.Millis))
		}
		if g.MoreHoles > 0 {
			fmt.Fprintf(tw, "%s\t%d more holes not listed\t\t\n", g.GPU, g.MoreHoles)
		}
	}
	return tw.Flush()
}

// formatSecond prints a time in China Standard Time to the second: a
// hole between two partial windows may be seconds long.
func formatSecond(t time.Time) string {
	return t.In(server.ChinaStandardTime).Format("2006-01-02 15:04:05")
}

// coverageSection ends a statement or claim table with the coverage of
// its GPUs, which whoever pays reads beside the lines.
func coverageSection(w io.Writer, whose string, gpus []coverage.GPU) error {
	fmt.Fprintf(w, "\ncoverage of %s (time since registration in the period, until now):\n", whose)
	return coverageTable(w, gpus)
}
