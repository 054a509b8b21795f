package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/inventory"
)

// modelsCmd prints the authority's model table: what a GPU may be
// registered as, the MIG profiles and slice shares it pays by, and the
// power figures its plausibility checks use.
func modelsCmd() *cobra.Command {
	c := leaf("models", "the model table: what a GPU may be registered as")
	format := formatFlag(c, "table", "json")
	return action(c, func(_ context.Context, stdout, stderr io.Writer) int {
		return printModels(stdout, stderr, *format)
	})
}

func printModels(stdout, stderr io.Writer, format string) int {
	ms := inventory.Models()
	switch format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ms); err != nil {
			fmt.Fprintf(stderr, "models: %v\n", err)
			return exitFailure
		}
		return exitOK
	case "table":
	default:
		fmt.Fprintf(stderr, "models: --format %q: want table or json\n", format)
		return exitUsage
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tNVML NAMES\tMIG PROFILES (slices/instances)\tIDLE FLOOR W\tMAX W")
	for _, m := range ms {
		profiles := make([]string, 0, len(m.Profiles))
		for name, p := range m.Profiles {
			profiles = append(profiles, fmt.Sprintf("%s %d/%d×%d", name, p.Slices, m.TotalSlices, p.MaxInstances))
		}
		sort.Strings(profiles)
		mig := strings.Join(profiles, ", ")
		if mig == "" {
			mig = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", m.ID, strings.Join(m.Names, "; "), mig,
			m.IdleFloorMilliwatts/1000, m.MaxPowerMilliwatts/1000)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "models: %v\n", err)
		return exitFailure
	}
	return exitOK
}
