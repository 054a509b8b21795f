package inventory

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/models.md")

const (
	docPath  = "../../docs/models.md"
	docBegin = "<!-- BEGIN generated from authority/inventory/models.yaml by `go test ./authority/inventory -update`; edit the YAML, not this -->\n"
	docEnd   = "<!-- END generated -->\n"
)

// docs/models.md shows the table as it is: the part between the markers is
// generated from the embedded YAML, and this test fails when it is stale.
func TestDocsTable(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	begin := bytes.Index(doc, []byte(docBegin))
	end := bytes.Index(doc, []byte(docEnd))
	if begin < 0 || end < begin {
		t.Fatalf("%s: no generated section (markers %q … %q)", docPath, docBegin, docEnd)
	}
	begin += len(docBegin)
	want := markdown(table.models)
	if string(doc[begin:end]) == want {
		return
	}
	if !*update {
		t.Fatalf("%s is stale: run go test ./authority/inventory -update", docPath)
	}
	out := slices.Concat(doc[:begin], []byte(want), doc[end:])
	if err := os.WriteFile(docPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func markdown(models []Model) string {
	var b strings.Builder
	b.WriteString("\n| id | NVML names | MIG: slices, profiles (slices × max instances) | idle floor | max power | sources |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, m := range models {
		names := make([]string, len(m.Names))
		for i, n := range m.Names {
			names[i] = "`" + n + "`"
		}
		mig := "no MIG"
		if m.MIG {
			profiles := slices.Sorted(maps.Keys(m.Profiles))
			// By slices, then by memory: "1g.5gb" before "1g.10gb".
			sort.SliceStable(profiles, func(i, j int) bool {
				a, b := profiles[i], profiles[j]
				if sa, sb := m.Profiles[a].Slices, m.Profiles[b].Slices; sa != sb {
					return sa < sb
				}
				return len(a) < len(b) || (len(a) == len(b) && a < b)
			})
			parts := make([]string, len(profiles))
			for i, n := range profiles {
				parts[i] = fmt.Sprintf("%s (%d×%d)", n, m.Profiles[n].Slices, m.Profiles[n].MaxInstances)
			}
			mig = fmt.Sprintf("%d slices: %s", m.TotalSlices, strings.Join(parts, ", "))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %d W | %d W | [%d](#%s) |\n", m.ID, strings.Join(names, ", "), mig,
			m.IdleFloorMilliwatts/1000, m.MaxPowerMilliwatts/1000, len(m.Sources), strings.ToLower(m.ID))
	}
	b.WriteString("\n### Sources\n")
	for _, m := range models {
		fmt.Fprintf(&b, "\n#### %s\n\n", m.ID)
		for _, s := range m.Sources {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	b.WriteString("\n")
	return b.String()
}
