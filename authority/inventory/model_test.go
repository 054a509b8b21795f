package inventory_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/inventory"
)

func mustLookup(t *testing.T, name string) inventory.Model {
	t.Helper()
	m, ok := inventory.Lookup(name)
	if !ok {
		t.Fatalf("Lookup(%q): not found", name)
	}
	return m
}

func TestLookupEveryIDAndName(t *testing.T) {
	ms := inventory.Models()
	if !slices.IsSortedFunc(ms, func(a, b inventory.Model) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("Models() is not sorted by id")
	}
	for _, m := range ms {
		for _, key := range append([]string{m.ID}, m.Names...) {
			for _, form := range []string{key, strings.ToUpper(key), strings.ToLower(key), "  " + key + "\n"} {
				got, ok := inventory.Lookup(form)
				if !ok || got.ID != m.ID {
					t.Errorf("Lookup(%q) = %q, %v; want %s", form, got.ID, ok, m.ID)
				}
			}
		}
	}
}

func TestLookupNames(t *testing.T) {
	tests := []struct{ name, id string }{
		{"NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"},
		{"NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"},
		{"NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"},
		{"NVIDIA H200", "H200-SXM5-141GB"},
		{"NVIDIA H200 141GB HBM3e", "H200-SXM5-141GB"},
		{"NVIDIA H200 NVL", "H200-NVL-141GB"},
		{"NVIDIA H100 PCIe", "H100-PCIE-80GB"},
		{"NVIDIA H100 NVL", "H100-NVL-94GB"},
		{"NVIDIA A100 80GB PCIe", "A100-PCIE-80GB"},
		{"NVIDIA A100-PCIE-40GB", "A100-PCIE-40GB"},
		{"NVIDIA H20", "H20-96GB"},
		{"NVIDIA H800", "H800-SXM5-80GB"},
		{"NVIDIA H800 PCIe", "H800-PCIE-80GB"},
		{"NVIDIA A800-SXM4-80GB", "A800-SXM4-80GB"},
		{"NVIDIA A800 80GB PCIe", "A800-PCIE-80GB"},
		{"NVIDIA L20", "L20-48GB"},
		{"NVIDIA L40S", "L40S-48GB"},
		{"NVIDIA GeForce RTX 4090", "RTX4090-24GB"},
		{"NVIDIA GeForce RTX 4090 D", "RTX4090D-24GB"},
		{"nvidia geforce rtx 4090 d ", "RTX4090D-24GB"},
	}
	for _, tt := range tests {
		if got := mustLookup(t, tt.name); got.ID != tt.id {
			t.Errorf("Lookup(%q) = %s, want %s", tt.name, got.ID, tt.id)
		}
	}
	for _, name := range []string{"", "NVIDIA", "NVIDIA H100", "NVIDIA L40", "Mock NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 4090D"} {
		if m, ok := inventory.Lookup(name); ok {
			t.Errorf("Lookup(%q) = %s, want not found", name, m.ID)
		}
	}
}

// What Lookup and Models hand out is a copy: changing it changes nothing
// another caller sees.
func TestModelsAreCopies(t *testing.T) {
	m := mustLookup(t, "H100-SXM5-80GB")
	m.Names[0] = "changed"
	m.Sources[0] = "changed"
	m.Profiles["1g.10gb"] = inventory.Profile{Slices: 7, MaxInstances: 7}
	delete(m.Profiles, "7g.80gb")
	for _, again := range []inventory.Model{mustLookup(t, "H100-SXM5-80GB"), inventory.Models()[slices.IndexFunc(
		inventory.Models(), func(x inventory.Model) bool { return x.ID == "H100-SXM5-80GB" })]} {
		if again.Names[0] != "NVIDIA H100 80GB HBM3" || again.Sources[0] == "changed" ||
			again.Profiles["1g.10gb"].Slices != 1 || again.Profiles["7g.80gb"].Slices != 7 {
			t.Errorf("the table changed: %+v", again)
		}
	}
}

func TestSlice(t *testing.T) {
	tests := []struct {
		model, profile string
		num, den       int
		ok             bool
	}{
		{"H100-SXM5-80GB", "", 1, 1, true},
		{"H100-SXM5-80GB", "1g.10gb", 1, 7, true},
		{"H100-SXM5-80GB", "1g.20gb", 1, 7, true},
		{"H100-SXM5-80GB", "3g.40gb", 3, 7, true},
		{"H100-SXM5-80GB", "7g.80gb", 7, 7, true},
		{"H100-SXM5-80GB", "1g.5gb", 0, 0, false},
		{"H100-SXM5-80GB", "1G.10GB", 0, 0, false}, // profiles are the agent's exact names
		{"A100-SXM4-40GB", "1g.5gb", 1, 7, true},
		{"H200-SXM5-141GB", "7g.141gb", 7, 7, true},
		{"L40S-48GB", "", 1, 1, true},
		{"L40S-48GB", "1g.12gb", 0, 0, false},
	}
	for _, tt := range tests {
		num, den, ok := mustLookup(t, tt.model).Slice(tt.profile)
		if num != tt.num || den != tt.den || ok != tt.ok {
			t.Errorf("%s Slice(%q) = %d/%d %v, want %d/%d %v", tt.model, tt.profile, num, den, ok, tt.num, tt.den, tt.ok)
		}
	}
}

func TestCheckLayout(t *testing.T) {
	n := func(k int, p string) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = p
		}
		return out
	}
	tests := []struct {
		name    string
		model   string
		layout  []string
		wantErr error
		say     string // the error names the profile
	}{
		{"no instances", "H100-SXM5-80GB", nil, nil, ""},
		{"no instances, no MIG", "L40S-48GB", nil, nil, ""},
		{"7 × 1g.10gb", "H100-SXM5-80GB", n(7, "1g.10gb"), nil, ""},
		{"8 × 1g.10gb", "H100-SXM5-80GB", n(8, "1g.10gb"), inventory.ErrTooManyInstances, `"1g.10gb"`},
		{"4g + 3g", "H100-SXM5-80GB", []string{"4g.40gb", "3g.40gb"}, nil, ""},
		{"4g + 4g", "H100-SXM5-80GB", []string{"4g.40gb", "4g.40gb"}, inventory.ErrTooManyInstances, `"4g.40gb"`},
		{"4g + 3g + 1g", "H100-SXM5-80GB", []string{"4g.40gb", "3g.40gb", "1g.10gb"}, inventory.ErrTooManySlices, `"1g.10gb"`},
		{"7g alone", "H100-SXM5-80GB", []string{"7g.80gb"}, nil, ""},
		{"7g + 1g", "H100-SXM5-80GB", []string{"7g.80gb", "1g.10gb"}, inventory.ErrTooManySlices, `"1g.10gb"`},
		{"4 × 1g.20gb", "H100-SXM5-80GB", n(4, "1g.20gb"), nil, ""},
		{"5 × 1g.20gb", "H100-SXM5-80GB", n(5, "1g.20gb"), inventory.ErrTooManyInstances, `"1g.20gb"`},
		{"3 × 2g + 1g", "H100-SXM5-80GB", append(n(3, "2g.20gb"), "1g.10gb"), nil, ""},
		{"mixed 1g sizes", "H100-SXM5-80GB", append(n(4, "1g.20gb"), n(3, "1g.10gb")...), nil, ""},
		{"unknown profile", "H100-SXM5-80GB", []string{"3g.40gb", "1g.5gb"}, inventory.ErrUnknownProfile, `"1g.5gb"`},
		{"other model's profile", "A100-SXM4-40GB", []string{"7g.80gb"}, inventory.ErrUnknownProfile, `"7g.80gb"`},
		{"instance on a non-MIG model", "RTX4090-24GB", []string{"1g.10gb"}, inventory.ErrNoMIG, `"1g.10gb"`},
		{"A100 40GB full", "A100-SXM4-40GB", n(7, "1g.5gb"), nil, ""},
		{"H200 2 × 3g", "H200-SXM5-141GB", n(2, "3g.71gb"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustLookup(t, tt.model)
			err := m.CheckLayout(tt.layout)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("CheckLayout(%v) = %v, want %v", tt.layout, err, tt.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), tt.say) || !strings.Contains(err.Error(), m.ID)) {
				t.Errorf("error %q does not name %s and %s", err, tt.say, m.ID)
			}
		})
	}
}
