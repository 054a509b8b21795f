package nvmlcollector_test

import (
	"context"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	nvmlcollector "github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

// brokenSensors answers power and energy with an error that is not a
// lost GPU, as some boards do now and then.
type brokenSensors struct {
	nvml.Interface
	ret *nvml.Return
}

type brokenDevice struct {
	nvml.Device
	ret *nvml.Return
}

func (b brokenSensors) DeviceGetHandleByIndex(i int) (nvml.Device, nvml.Return) {
	d, ret := b.Interface.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return d, ret
	}
	return brokenDevice{Device: d, ret: b.ret}, ret
}

func (b brokenDevice) GetPowerUsage() (uint32, nvml.Return) {
	if *b.ret == nvml.SUCCESS {
		return b.Device.GetPowerUsage()
	}
	return 0, *b.ret
}

func (b brokenDevice) GetTotalEnergyConsumption() (uint64, nvml.Return) {
	if *b.ret == nvml.SUCCESS {
		return b.Device.GetTotalEnergyConsumption()
	}
	return 0, *b.ret
}

// A failing power or energy sensor makes those readings Unknown; the
// GPU stays readable and its processes are still metered. Only a lost
// GPU turns its time into a gap.
func TestAuxiliaryReadingFailuresAreNotGaps(t *testing.T) {
	for _, tc := range []struct {
		ret     nvml.Return
		wantErr bool
	}{
		{nvml.ERROR_UNKNOWN, false},
		{nvml.ERROR_TIMEOUT, false},
		{nvml.ERROR_GPU_IS_LOST, true},
	} {
		t.Run(tc.ret.Error(), func(t *testing.T) {
			m, err := sim.NewMachine(sim.GPUSpec{})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetProcesses(m.GPUUUID(0), []device.Process{{PID: 42, SMUtil: device.Unknown}}); err != nil {
				t.Fatal(err)
			}
			ret := nvml.SUCCESS
			c := nvmlcollector.New(brokenSensors{Interface: m.Interface(), ret: &ret}, nvmlcollector.Options{})
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
