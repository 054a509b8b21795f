package nvml_test

import (
	"testing"

	"github.com/gpumeter/gpumeter/collectors/sim"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestUUIDsAreCanonical: what NVML gives is reported in the canonical form
// the authority keys by (records and the inventory must agree with it),
// and a GPU whose UUID has no canonical form is left out, never metered
// under a name the authority refuses.
func TestUUIDsAreCanonical(t *testing.T) {
	m, err := sim.NewMachine(
		sim.GPUSpec{UUID: " GPU-5C9D0A8E-1F3B-4C7E-9A2D-6E8F0B1C2D3E", MIG: []string{"3g.40gb", "4g.40gb"}},
		sim.GPUSpec{UUID: "GPU-not-a-uuid"},
		sim.GPUSpec{UUID: "gpu-00000000-0000-4000-8000-00000000000A"},
	)
	if err != nil {
		t.Fatal(err)
	}
	s := collect(t, started(t, m))
	want := []string{"GPU-5c9d0a8e-1f3b-4c7e-9a2d-6e8f0b1c2d3e", "GPU-00000000-0000-4000-8000-00000000000a"}
	if len(s.Devices) != len(want) {
		t.Fatalf("%d devices, want %d: the GPU without a UUID left out", len(s.Devices), len(want))
	}
	for i, d := range s.Devices {
		if d.UUID != want[i] || d.Err != nil {
			t.Errorf("GPU %d: UUID %q (err %v), want %q", i, d.UUID, d.Err, want[i])
		}
	}
	if len(s.Devices[0].Instances) != 2 {
		t.Fatalf("%d MIG instances, want 2", len(s.Devices[0].Instances))
	}
	for _, in := range s.Devices[0].Instances {
		if c, err := protocol.CanonicalMIGUUID(in.UUID); err != nil || c != in.UUID {
			t.Errorf("MIG UUID %q is not canonical (%v)", in.UUID, err)
		}
	}
}
