package nvml_test

import (
	"context"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

// brokenSensors answers power and energy with an error that is not a
// lost GPU, as some boards do now and then.
type brokenSensors struct {
	gonvml.Interface
	ret *gonvml.Return
}

type brokenDevice struct {
	gonvml.Device
	ret *gonvml.Return
}

func (b brokenSensors) DeviceGetHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	d, ret := b.Interface.DeviceGetHandleByIndex(i)
	if ret != gonvml.SUCCESS {
		return d, ret
	}
	return brokenDevice{Device: d, ret: b.ret}, ret
}

func (b brokenDevice) GetPowerUsage() (uint32, gonvml.Return) {
	if *b.ret == gonvml.SUCCESS {
		return b.Device.GetPowerUsage()
	}
	return 0, *b.ret
}

func (b brokenDevice) GetTotalEnergyConsumption() (uint64, gonvml.Return) {
	if *b.ret == gonvml.SUCCESS {
		return b.Device.GetTotalEnergyConsumption()
	}
	return 0, *b.ret
}

// A failing power or energy sensor makes those readings Unknown; the
// GPU stays readable and its processes are still metered. Only a lost
// GPU turns its time into a gap.
func TestAuxiliaryReadingFailuresAreNotGaps(t *testing.T) {
	for _, tc := range []struct {
		ret     gonvml.Return
		wantErr bool
	}{
		{gonvml.ERROR_UNKNOWN, false},
		{gonvml.ERROR_TIMEOUT, false},
		{gonvml.ERROR_GPU_IS_LOST, true},
	} {
		t.Run(tc.ret.Error(), func(t *testing.T) {
			m, err := sim.NewMachine(sim.GPUSpec{})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetProcesses(m.GPUUUID(0), []device.Process{{PID: 42, SMUtil: device.Unknown}}); err != nil {
				t.Fatal(err)
			}
			ret := gonvml.SUCCESS
			c := nvml.New(brokenSensors{Interface: m.Interface(), ret: &ret}, nvml.Options{})
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Collect(context.Background()); err != nil { // healthy: the GPU's identity is known
				t.Fatal(err)
			}
			ret = tc.ret
			snap, err := c.Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			d := snap.Devices[0]
			if (d.Err != nil) != tc.wantErr {
				t.Fatalf("device err %v, want an error: %v", d.Err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if d.PowerMilliwatts != device.Unknown || d.EnergyMillijoules != device.Unknown {
				t.Errorf("power %d energy %d, want Unknown", d.PowerMilliwatts, d.EnergyMillijoules)
			}
			if len(d.Processes) != 1 || d.Processes[0].PID != 42 {
				t.Errorf("processes %v, want pid 42 still metered", d.Processes)
			}
		})
	}
}
