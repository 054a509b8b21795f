package inventory

import (
	"strings"
	"testing"
)

// The embedded table loads (package init would have panicked otherwise)
// and every model holds the invariants the package doc promises.
func TestTableInvariants(t *testing.T) {
	if _, err := parse(tableName, modelsYAML); err != nil {
		t.Fatal(err)
	}
	for _, m := range table.models {
		t.Run(m.ID, func(t *testing.T) {
			if len(m.Names) == 0 {
				t.Error("no NVML names")
			}
			if len(m.Sources) == 0 {
				t.Error("no sources")
			}
			if m.IdleFloorMilliwatts <= 0 || m.MaxPowerMilliwatts <= m.IdleFloorMilliwatts {
				t.Errorf("idle floor %d mW, max power %d mW: want 0 < floor < max",
					m.IdleFloorMilliwatts, m.MaxPowerMilliwatts)
			}
			if !m.MIG {
				if m.TotalSlices != 0 || m.Profiles != nil {
					t.Errorf("no MIG, yet total slices %d and profiles %v", m.TotalSlices, m.Profiles)
				}
				return
			}
			largest := 0
			for name, p := range m.Profiles {
				largest = max(largest, p.Slices)
				if p.Slices*p.MaxInstances > m.TotalSlices {
					t.Errorf("%s: %d × %d slices exceed the GPU's %d", name, p.MaxInstances, p.Slices, m.TotalSlices)
				}
			}
			if largest != m.TotalSlices {
				t.Errorf("largest profile %d slices, total %d", largest, m.TotalSlices)
			}
		})
	}
}

// The models the brief of this table asks for are all there, MIG where the
// part has it, with the whole-GPU profile named as NVIDIA names it.
func TestTableHasModels(t *testing.T) {
	tests := []struct {
		id        string
		whole     string // the 7-slice profile; "" for a model without MIG
		maxWatts  int64
		idleBelow int64 // the floor is below this many watts
	}{
		{"H100-SXM5-80GB", "7g.80gb", 700, 101},
		{"H100-PCIE-80GB", "7g.80gb", 350, 101},
		{"H100-NVL-94GB", "7g.94gb", 400, 101},
		{"H200-SXM5-141GB", "7g.141gb", 700, 101},
		{"H200-NVL-141GB", "7g.141gb", 600, 101},
		{"A100-SXM4-80GB", "7g.80gb", 500, 101},
		{"A100-SXM4-40GB", "7g.40gb", 400, 101},
		{"A100-PCIE-40GB", "7g.40gb", 250, 101},
		{"A100-PCIE-80GB", "7g.80gb", 300, 101},
		{"H20-96GB", "7g.96gb", 400, 101},
		{"H800-SXM5-80GB", "7g.80gb", 700, 101},
		{"H800-PCIE-80GB", "7g.80gb", 350, 101},
		{"A800-SXM4-80GB", "7g.80gb", 500, 101},
		{"A800-PCIE-80GB", "7g.80gb", 300, 101},
		{"A800-PCIE-40GB", "7g.40gb", 250, 101},
		{"L20-48GB", "", 275, 50},
		{"L40S-48GB", "", 350, 50},
		{"RTX4090-24GB", "", 600, 50},
		{"RTX4090D-24GB", "", 600, 50},
	}
	if len(tests) != len(table.models) {
		t.Errorf("table has %d models, this test knows %d", len(table.models), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			i, ok := table.byKey[normalize(tt.id)]
			if !ok {
				t.Fatal("missing")
			}
			m := table.models[i]
			if m.MIG != (tt.whole != "") {
				t.Errorf("MIG %v", m.MIG)
			}
			if tt.whole != "" && (m.TotalSlices != 7 || m.Profiles[tt.whole].Slices != 7) {
				t.Errorf("total slices %d, profiles %v: want 7 and %s", m.TotalSlices, m.Profiles, tt.whole)
			}
			if m.MaxPowerMilliwatts != tt.maxWatts*1000 {
				t.Errorf("max power %d mW, want %d W", m.MaxPowerMilliwatts, tt.maxWatts)
			}
			if m.IdleFloorMilliwatts >= tt.idleBelow*1000 {
				t.Errorf("idle floor %d mW, want below %d W", m.IdleFloorMilliwatts, tt.idleBelow)
			}
		})
	}
}

const validEntry = `
  - id: X100-80GB
    names: ["NVIDIA X100"]
    mig: true
    total_slices: 7
    mig_profiles:
      1g.10gb: {slices: 1, max_instances: 7}
      7g.80gb: {slices: 7, max_instances: 1}
    idle_floor_watts: 80
    max_power_watts: 700
    sources: ["datasheet"]
`

func TestParseRefuses(t *testing.T) {
	if _, err := parse("t.yaml", []byte("models:"+validEntry)); err != nil {
		t.Fatalf("the valid entry is refused: %v", err)
	}
	tests := []struct {
		name string
		edit func(string) string
		say  []string // the error must contain each
	}{
		{"unknown key", repl("    mig: true\n", "    mig: true\n    tdp: 3\n"), []string{"t.yaml:5: models[0].tdp: unknown field"}},
		{"bad id", repl("X100-80GB", "x100 80gb"), []string{"t.yaml:2:", "id:", "x100 80gb"}},
		{"no names", repl(`["NVIDIA X100"]`, `[]`), []string{"t.yaml:3:", "names: no NVML names"}},
		{"padded name", repl(`"NVIDIA X100"`, `" NVIDIA X100"`), []string{"t.yaml:3:", "names:"}},
		{"no sources", repl(`["datasheet"]`, `[]`), []string{"t.yaml:11:", "sources:"}},
		{"idle floor 0", repl("idle_floor_watts: 80", "idle_floor_watts: 0"), []string{"t.yaml:9:", "idle_floor_watts:"}},
		{"max below idle", repl("max_power_watts: 700", "max_power_watts: 80"), []string{"t.yaml:10:", "max_power_watts: 80 W"}},
		{"max absurd", repl("max_power_watts: 700", "max_power_watts: 9000000000"), []string{"max_power_watts:"}},
		{"MIG without slices", repl("total_slices: 7", "total_slices: 0"), []string{"t.yaml:5:", "total_slices:"}},
		{"no MIG yet profiles", repl("mig: true", "mig: false"), []string{"t.yaml:4:", "mig: false"}},
		{"bad profile name", repl("1g.10gb:", "1g.10gb+me:"), []string{"t.yaml:7:", "mig_profiles.1g.10gb+me: not a base profile"}},
		{"slices disagree with name", repl("1g.10gb: {slices: 1", "1g.10gb: {slices: 2"), []string{"t.yaml:7:", "slices 2, the name says 1"}},
		{"too many instances", repl("max_instances: 7", "max_instances: 8"), []string{"mig_profiles.1g.10gb: max_instances 8"}},
		{"no whole-GPU profile", repl("total_slices: 7", "total_slices: 8"), []string{"mig_profiles: the largest profile has 7 slices"}},
		{"profile over the GPU", repl("7g.80gb: {slices: 7", "7g.80gb: {slices: 8"), []string{"7g.80gb"}},
		{"duplicate model", func(s string) string { return s + validEntry }, []string{"t.yaml:13:", "models[1]", `"X100-80GB" is already models[0]'s (X100-80GB)`}},
		{"name of another model", func(s string) string {
			return s + strings.NewReplacer("X100-80GB", "Y100-80GB").Replace(validEntry)
		}, []string{"models[1] (Y100-80GB): names:", `"NVIDIA X100" is already models[0]'s`}},
		{"name equal to another id, case aside", func(s string) string {
			return s + strings.NewReplacer("X100-80GB", "Y100-80GB", "NVIDIA X100", "x100-80gb").Replace(validEntry)
		}, []string{"names:", `"x100-80gb" is already models[0]'s`}},
		{"name twice", repl(`["NVIDIA X100"]`, `["NVIDIA X100", "nvidia x100"]`), []string{"is listed twice"}},
		{"not a list", func(string) string { return "models: 3\n" }, []string{"t.yaml:1: models: 3 is a single value, want a list"}},
		{"bad syntax", func(string) string { return "models: [\n" }, []string{"t.yaml:1: did not find expected"}},
		{"empty", func(string) string { return "" }, []string{"t.yaml: empty model table"}},
		{"no models", func(string) string { return "models: []\n" }, []string{"no models"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse("t.yaml", []byte(tt.edit("models:"+validEntry)))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, s := range tt.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test edit does not apply: " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}
