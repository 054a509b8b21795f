package nvml_test

import (
	"errors"
	"slices"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/sim"
)

// reconfiguring wraps a machine's NVML so that GPU 0 is reconfigured right
// after handing out a MIG handle, the race a real reconfiguration can hit.
type reconfiguring struct {
	gonvml.Interface
	fire func()
}

func (r reconfiguring) DeviceGetHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	h, ret := r.Interface.DeviceGetHandleByIndex(i)
	if i == 0 && ret == gonvml.SUCCESS {
		return reconfiguringDevice{Device: h, fire: r.fire}, ret
	}
	return h, ret
}

type reconfiguringDevice struct {
	gonvml.Device
	fire func()
}

func (d reconfiguringDevice) GetMigDeviceHandleByIndex(k int) (gonvml.Device, gonvml.Return) {
	h, ret := d.Device.GetMigDeviceHandleByIndex(k)
	d.fire()
	return h, ret
}

func TestStaleMIGHandlesAreReenumerated(t *testing.T) {
	tests := []struct {
		name    string
		times   int // reconfigurations to make, one per handle handed out
		wantErr bool
	}{
		{"once: read again", 1, false},
		{"every time: the GPU is an Err", 1 << 30, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sim.DGXH100(map[int][]string{0: {"3g.40gb", "3g.40gb"}})
			if err != nil {
				t.Fatal(err)
			}
			armed, left := false, tt.times
			lib := reconfiguring{Interface: m.Interface(), fire: func() {
				if armed && left > 0 {
					left--
					if err := m.SetMIG(0, []string{"2g.20gb", "1g.10gb"}); err != nil {
						t.Error(err)
					}
				}
			}}
			c := startedOn(t, lib)
			collect(t, c)
			armed = true
			d := collect(t, c).Devices[0]
			if tt.wantErr {
				if !errors.Is(d.Err, gonvml.ERROR_INVALID_ARGUMENT) {
					t.Fatalf("Err %v, want a stale-handle INVALID_ARGUMENT", d.Err)
				}
				if len(d.Instances) != 2 || d.Instances[0].Profile != "3g.40gb" {
					t.Errorf("instances %+v, want the last good layout kept", d.Instances)
				}
				return
			}
			var got []string
			for _, in := range d.Instances {
				got = append(got, in.Profile)
			}
			if d.Err != nil || !slices.Equal(got, []string{"2g.20gb", "1g.10gb"}) {
				t.Errorf("err %v profiles %v, want the new layout", d.Err, got)
			}
		})
	}
}
