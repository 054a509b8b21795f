package sim_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/sim"
)

func TestProfilesPerModel(t *testing.T) {
	tests := []struct {
		model string
		want  []string
	}{
		{"", []string{"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"}},
		{"A100-SXM4-40GB", []string{"1g.10gb", "1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"}},
		{"A100-SXM4-80GB", []string{"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"}},
		{"H200-SXM5-141GB", []string{"1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			got, err := sim.Profiles(tt.model)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("profiles %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewMachineRejects(t *testing.T) {
	tests := []struct {
		name  string
		specs []sim.GPUSpec
		say   string // the error must name the culprit
	}{
		{"no GPUs", nil, "no GPUs"},
		{"unknown model", []sim.GPUSpec{{Model: "V100"}}, `"V100"`},
		{"unknown profile", []sim.GPUSpec{{MIG: []string{"1g.5gb"}}}, `"1g.5gb"`},
		{"more than 7 slices", []sim.GPUSpec{{MIG: []string{"4g.40gb", "3g.40gb", "1g.10gb"}}}, "needs 8 slices"},
		{"8 one-slice instances", []sim.GPUSpec{{MIG: []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}}}, "at most 7"},
		{"profile over its instance count", []sim.GPUSpec{{MIG: []string{"1g.20gb", "1g.20gb", "1g.20gb", "1g.20gb", "1g.20gb"}}}, "at most 4"},
		{"duplicate UUID", []sim.GPUSpec{{UUID: "GPU-x"}, {UUID: "GPU-x"}}, "GPU-x already used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sim.NewMachine(tt.specs...)
			if err == nil {
				t.Fatalf("NewMachine accepted %+v (GPU 0: %s)", tt.specs, m.GPUUUID(0))
			}
			if !strings.Contains(err.Error(), tt.say) {
				t.Errorf("error %q does not say %q", err, tt.say)
			}
		})
	}
}
