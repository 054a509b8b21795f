package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/gpumeter/gpumeter/authority/inventory"
)

// cmdModels prints the authority's model table: what a GPU may be
// registered as, the MIG profiles and slice shares it pays by, and the
// power figures its plausibility checks use.
func cmdModels(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models", flag.ContinueOnError)
	format := fs.String("format", "table", "table or json")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	ms := inventory.Models()
	switch *format {
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
		fmt.Fprintf(stderr, "models: --format %q: want table or json\n", *format)
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
