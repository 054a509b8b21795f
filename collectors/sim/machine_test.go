package sim_test

import (
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

// initialized is a DGX H100 with NVML initialized.
func initialized(t *testing.T, mig map[int][]string) (*sim.Machine, nvml.Interface) {
	t.Helper()
	m, err := sim.DGXH100(mig)
	if err != nil {
		t.Fatal(err)
	}
	lib := m.Interface()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatalf("Init: %v", ret)
	}
	return m, lib
}

func handle(t *testing.T, lib nvml.Interface, i int) nvml.Device {
	t.Helper()
	h, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		t.Fatalf("handle %d: %v", i, ret)
	}
	return h
}

func TestUUIDsAreDeterministic(t *testing.T) {
	a, _ := initialized(t, map[int][]string{1: {"1g.10gb", "1g.10gb"}})
	b, _ := initialized(t, map[int][]string{1: {"1g.10gb", "1g.10gb"}})
	for i := range 8 {
		if a.GPUUUID(i) != b.GPUUUID(i) || !strings.HasPrefix(a.GPUUUID(i), "GPU-") {
			t.Errorf("GPU %d: %s vs %s", i, a.GPUUUID(i), b.GPUUUID(i))
		}
	}
	am, bm := a.MIGUUIDs(1), b.MIGUUIDs(1)
	if len(am) != 2 || am[0] != bm[0] || am[1] != bm[1] || am[0] == am[1] || !strings.HasPrefix(am[0], "MIG-") {
		t.Errorf("MIG UUIDs %v vs %v", am, bm)
	}
	if err := a.SetMIG(1, []string{"1g.10gb", "1g.10gb"}); err != nil {
		t.Fatal(err)
	}
	if again := a.MIGUUIDs(1); again[0] == am[0] {
		t.Errorf("reconfiguration kept UUID %s", again[0])
	}
	c, err := sim.NewMachine(sim.GPUSpec{UUID: "GPU-given"})
	if err != nil || c.GPUUUID(0) != "GPU-given" {
		t.Errorf("given UUID: %s, %v", c.GPUUUID(0), err)
	}
}

func TestLibraryState(t *testing.T) {
	m, err := sim.DGXH100(nil)
	if err != nil {
		t.Fatal(err)
	}
	lib := m.Interface()
	if _, ret := lib.DeviceGetCount(); ret != nvml.ERROR_UNINITIALIZED {
		t.Errorf("before Init: %v, want ERROR_UNINITIALIZED", ret)
	}
	m.SetInitError(nvml.ERROR_LIBRARY_NOT_FOUND)
	if ret := lib.Init(); ret != nvml.ERROR_LIBRARY_NOT_FOUND {
		t.Fatalf("Init: %v", ret)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Shutdown after a failed Init did not panic")
			}
		}()
		lib.Shutdown()
	}()
	if n := m.CallsAfterFailedInit(); n != 1 {
		t.Errorf("CallsAfterFailedInit %d, want 1", n)
	}
	m.SetInitError(nvml.SUCCESS)
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatalf("Init once the driver is back: %v", ret)
	}
	if n, ret := lib.DeviceGetCount(); ret != nvml.SUCCESS || n != 8 {
		t.Errorf("DeviceGetCount: %d %v", n, ret)
	}
}

func TestLostGPUAnswersGPUIsLost(t *testing.T) {
	m, lib := initialized(t, map[int][]string{2: {"7g.80gb"}})
	h := handle(t, lib, 2)
	mh, ret := h.GetMigDeviceHandleByIndex(0)
	if ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	m.SetLost(2, true)
	calls := map[string]func() nvml.Return{
		"handle":     func() nvml.Return { _, r := lib.DeviceGetHandleByIndex(2); return r },
		"UUID":       func() nvml.Return { _, r := h.GetUUID(); return r },
		"memory":     func() nvml.Return { _, r := h.GetMemoryInfo(); return r },
		"MIG mode":   func() nvml.Return { _, _, r := h.GetMigMode(); return r },
		"processes":  func() nvml.Return { _, r := h.GetComputeRunningProcesses(); return r },
		"energy":     func() nvml.Return { _, r := h.GetTotalEnergyConsumption(); return r },
		"MIG UUID":   func() nvml.Return { _, r := mh.GetUUID(); return r },
		"MIG procs":  func() nvml.Return { _, r := mh.GetComputeRunningProcesses(); return r },
		"MIG attrib": func() nvml.Return { _, r := mh.GetAttributes(); return r },
	}
	for name, call := range calls {
		if ret := call(); ret != nvml.ERROR_GPU_IS_LOST {
			t.Errorf("%s: %v, want ERROR_GPU_IS_LOST", name, ret)
		}
	}
	if _, ret := handle(t, lib, 1).GetUUID(); ret != nvml.SUCCESS {
		t.Errorf("neighbour GPU: %v", ret)
	}
	m.SetLost(2, false)
	if _, ret := mh.GetUUID(); ret != nvml.SUCCESS {
		t.Errorf("MIG handle after recovery: %v", ret)
	}
}

func TestMIGProcessesAndHandles(t *testing.T) {
	m, lib := initialized(t, map[int][]string{0: {"3g.40gb", "1g.10gb"}})
	mig := m.MIGUUIDs(0)
	if err := m.SetProcesses(mig[1], []device.Process{{PID: 7, UsedMemoryBytes: 1 << 20, SMUtil: 50}}); err != nil {
		t.Fatal(err)
	}
	h := handle(t, lib, 0)
	all, ret := h.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS || len(all) != 1 || all[0].Pid != 7 || all[0].GpuInstanceId != 2 || all[0].ComputeInstanceId != 0 {
		t.Errorf("parent processes %+v %v, want PID 7 tagged GPU instance 2", all, ret)
	}
	mh, _ := h.GetMigDeviceHandleByIndex(1)
	if ps, ret := mh.GetComputeRunningProcesses(); ret != nvml.SUCCESS || len(ps) != 1 || ps[0].Pid != 7 {
		t.Errorf("instance processes %+v %v", ps, ret)
	}
	if _, ret := mh.GetProcessUtilization(0); ret != nvml.ERROR_NOT_SUPPORTED {
		t.Errorf("process utilization on MIG: %v, want NOT_SUPPORTED", ret)
	}
	if _, ret := h.GetMigDeviceHandleByIndex(2); ret != nvml.ERROR_NOT_FOUND {
		t.Errorf("empty slot: %v, want NOT_FOUND", ret)
	}
	if err := m.SetMIG(0, []string{"7g.80gb"}); err != nil {
		t.Fatal(err)
	}
	if _, ret := mh.GetUUID(); ret != nvml.ERROR_INVALID_ARGUMENT {
		t.Errorf("handle after reconfiguration: %v, want INVALID_ARGUMENT", ret)
	}
	if err := m.SetProcesses(mig[1], nil); err == nil {
		t.Error("SetProcesses on a removed instance accepted")
	}
	if err := m.SetProcesses(m.GPUUUID(0), nil); err == nil {
		t.Error("SetProcesses on a GPU in MIG mode accepted")
	}
}

func TestProcessUtilizationSamples(t *testing.T) {
	m, lib := initialized(t, nil)
	h := handle(t, lib, 0)
	if _, ret := h.GetProcessUtilization(0); ret != nvml.ERROR_NOT_FOUND {
		t.Errorf("no processes: %v, want NOT_FOUND", ret)
	}
	if err := m.SetProcesses(m.GPUUUID(0), []device.Process{{PID: 1, SMUtil: 60}, {PID: 2, SMUtil: device.Unknown}}); err != nil {
		t.Fatal(err)
	}
	s1, ret := h.GetProcessUtilization(0)
	if ret != nvml.SUCCESS || len(s1) != 1 || s1[0].Pid != 1 || s1[0].SmUtil != 60 {
		t.Fatalf("samples %+v %v, want PID 1 at 60", s1, ret)
	}
	s2, ret := h.GetProcessUtilization(s1[0].TimeStamp)
	if ret != nvml.SUCCESS || s2[0].TimeStamp <= s1[0].TimeStamp {
		t.Errorf("next samples %+v %v, want newer ones", s2, ret)
	}
	if _, ret := h.GetProcessUtilization(^uint64(0)); ret != nvml.ERROR_NOT_FOUND {
		t.Errorf("nothing newer: %v, want NOT_FOUND", ret)
	}
}

func TestEnergyIntegratesPowerExactly(t *testing.T) {
	tests := []struct {
		name  string
		mw    int64
		step  time.Duration
		steps int
		want  uint64 // mJ
	}{
		{"sub-millijoule steps add up", 1_500, 333 * time.Microsecond, 2000, 999},
		{"sub-microsecond steps add up", 1_000_000, 500 * time.Nanosecond, 2000, 1000},
		{"one big step", 700_000, 24 * time.Hour, 1, 700 * 86_400_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, lib := initialized(t, nil)
			m.SetPower(0, tt.mw)
			m.AddEnergy(0, 10)
			for range tt.steps {
				m.AdvanceEnergy(tt.step)
			}
			e, ret := handle(t, lib, 0).GetTotalEnergyConsumption()
			if ret != nvml.SUCCESS || e != tt.want+10 {
				t.Errorf("energy %d mJ %v, want %d", e, ret, tt.want+10)
			}
		})
	}
}
