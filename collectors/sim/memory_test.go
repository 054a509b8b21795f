package sim_test

import (
	"context"
	"reflect"
	"runtime"
	"slices"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

// TestCollectDoesNotGrowMemory runs many collector cycles over a DGX H100
// and checks that the heap does not grow with them: a simulated daemon
// runs for days, and go-nvml's mocks would record every call's arguments
// forever if the Machine let calls reach their recording methods.
func TestCollectDoesNotGrowMemory(t *testing.T) {
	const (
		cycles    = 20_000
		maxGrowth = 2 << 20 // bytes; the mocks' records grew 2.7 and 12.6 MB here
	)
	tests := []struct {
		name string
		mig  map[int][]string
	}{
		// Whole GPUs: handle lookups by index and process utilization
		// with the last sample's timestamp, every cycle.
		{"whole GPUs", nil},
		// MIG GPUs: MIG handle lookups by slot, every slot every cycle.
		{"MIG on every GPU", map[int][]string{
			0: slices.Repeat([]string{"1g.10gb"}, 7), 1: slices.Repeat([]string{"1g.10gb"}, 7),
			2: slices.Repeat([]string{"1g.10gb"}, 7), 3: slices.Repeat([]string{"1g.10gb"}, 7),
			4: {"3g.40gb", "3g.40gb"}, 5: {"3g.40gb", "3g.40gb"},
			6: {"7g.80gb"}, 7: {"2g.20gb", "2g.20gb", "2g.20gb"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sim.DGXH100(tt.mig)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 8 {
				units := m.MIGUUIDs(i)
				if units == nil {
					units = []string{m.GPUUUID(i)}
				}
				for j, u := range units {
					pid := uint32(1000 + 10*i + j)
					p := []device.Process{{PID: pid, UsedMemoryBytes: 1 << 30, SMUtil: 50}}
					if err := m.SetProcesses(u, p); err != nil {
						t.Fatal(err)
					}
				}
			}
			c := nvml.New(m.Interface(), nvml.Options{})
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}()
			ctx := context.Background()
			collectOK := func() {
				s, err := c.Collect(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.Devices) != 8 || s.Devices[0].Err != nil {
					t.Fatalf("snapshot of %d devices, first err %v", len(s.Devices), s.Devices[0].Err)
				}
			}
			// The collector's own maps fill on the first cycles.
			collectOK()
			before := heapAlloc()
			for range cycles {
				collectOK()
			}
			growth := int64(heapAlloc()) - int64(before)
			t.Logf("heap grew %d bytes over %d cycles", growth, cycles)
			if growth > maxGrowth {
				t.Errorf("heap grew %.1f bytes per cycle, want at most %d bytes in all",
					float64(growth)/cycles, maxGrowth)
			}
			runtime.KeepAlive(m)
		})
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestCollectorCallsLeaveNoRecords checks, call by call, that what the NVML
// collector calls is answered by the Machine and never reaches the
// recording methods of the go-nvml mocks underneath (their XxxCalls
// accessors, still reachable through the wrappers, stay empty).
func TestCollectorCallsLeaveNoRecords(t *testing.T) {
	m, err := sim.DGXH100(map[int][]string{0: {"3g.40gb", "3g.40gb"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetProcesses(m.GPUUUID(1), []device.Process{{PID: 7, SMUtil: 30}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetProcesses(m.MIGUUIDs(0)[0], []device.Process{{PID: 8, SMUtil: 30}}); err != nil {
		t.Fatal(err)
	}
	lib := m.Interface()
	c := nvml.New(lib, nvml.Options{})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Collect(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close shut NVML down; Init again to take handles to inspect.
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		t.Fatal(ret)
	}
	migGPU, wholeGPU := handle(t, lib, 0), handle(t, lib, 1)
	mig, ret := migGPU.GetMigDeviceHandleByIndex(0)
	if ret != gonvml.SUCCESS {
		t.Fatal(ret)
	}
	deviceCalls := []string{"GetUUID", "GetName", "GetMemoryInfo", "GetUtilizationRates",
		"GetPowerUsage", "GetTotalEnergyConsumption", "GetMigMode", "GetMaxMigDeviceCount",
		"GetMigDeviceHandleByIndex", "GetGpuInstanceProfileInfo", "GetComputeRunningProcesses",
		"GetProcessUtilization"}
	tests := []struct {
		name   string
		target any
		calls  []string
	}{
		{"library", lib, []string{"Init", "Shutdown", "SystemGetDriverVersion",
			"DeviceGetCount", "DeviceGetHandleByIndex"}},
		{"GPU in MIG mode", migGPU, deviceCalls},
		{"whole GPU", wholeGPU, deviceCalls},
		{"MIG handle", mig, []string{"GetUUID", "GetGpuInstanceId", "GetComputeInstanceId",
			"GetAttributes", "GetComputeRunningProcesses"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := reflect.ValueOf(tt.target)
			for _, call := range tt.calls {
				records := v.MethodByName(call + "Calls")
				if !records.IsValid() {
					t.Fatalf("%T has no %sCalls: not a go-nvml mock underneath", tt.target, call)
				}
				if n := records.Call(nil)[0].Len(); n != 0 {
					t.Errorf("%s reached the mock %d times, recorded forever", call, n)
				}
			}
		})
	}
}

// TestUnprogrammedCallsReachTheMocks checks that the wrappers leave the
// go-nvml mocks in place for every call the Machine does not answer.
func TestUnprogrammedCallsReachTheMocks(t *testing.T) {
	_, lib := initialized(t, map[int][]string{0: {"7g.80gb"}})
	gpu := handle(t, lib, 0)
	mig, ret := gpu.GetMigDeviceHandleByIndex(0)
	if ret != gonvml.SUCCESS {
		t.Fatal(ret)
	}
	if parent, ret := mig.GetDeviceHandleFromMigDeviceHandle(); ret != gonvml.SUCCESS || parent != gpu {
		t.Errorf("MIG parent %v (%v), want the GPU's own handle", parent, ret)
	}
	tests := []struct {
		name      string
		call      func() gonvml.Return
		wantPanic bool
	}{
		{"mock server's architecture of an H100", func() gonvml.Return {
			arch, ret := gpu.GetArchitecture()
			if ret == gonvml.SUCCESS && arch != gonvml.DEVICE_ARCH_HOPPER {
				t.Errorf("architecture %v, want Hopper", arch)
			}
			return ret
		}, false},
		{"mock server's CUDA version", func() gonvml.Return {
			v, ret := lib.SystemGetCudaDriverVersion()
			if ret == gonvml.SUCCESS && v != 12040 {
				t.Errorf("CUDA driver version %d, want 12040", v)
			}
			return ret
		}, false},
		{"MIG handle's nil mock Func", func() gonvml.Return { _, ret := mig.GetPciInfo(); return ret }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			panicked := true
			func() {
				defer func() { _ = recover() }()
				if ret := tt.call(); ret != gonvml.SUCCESS {
					t.Errorf("answered %v, want SUCCESS", ret)
				}
				panicked = false
			}()
			if panicked != tt.wantPanic {
				t.Errorf("panicked %v, want %v", panicked, tt.wantPanic)
			}
		})
	}
}
