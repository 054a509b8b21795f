package nvml_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
)

func TestLostGPUIsConfinedAndComesBack(t *testing.T) {
	tests := []struct {
		name string
		gpu  int
		mig  map[int][]string
	}{
		{"whole GPU", 3, nil},
		{"GPU in MIG mode keeps its instances", 5, map[int][]string{5: {"3g.40gb", "3g.40gb"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := dgx(t, tt.mig)
			for i := range 8 {
				if tt.mig[i] == nil {
					if err := m.SetProcesses(m.GPUUUID(i), procs(uint32(100+i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			c := started(t, m)
			before := collect(t, c)
			m.SetLost(tt.gpu, true)
			s := collect(t, c)
			if len(s.Devices) != 8 {
				t.Fatalf("%d devices while lost, want 8", len(s.Devices))
			}
			for i, d := range s.Devices {
				if i != tt.gpu {
					if d.Err != nil || d.UUID != m.GPUUUID(i) {
						t.Errorf("GPU %d: err %v UUID %s: a lost neighbour must not affect it", i, d.Err, d.UUID)
					}
					continue
				}
				if !errors.Is(d.Err, gonvml.ERROR_GPU_IS_LOST) {
					t.Errorf("lost GPU: Err %v, want GPU_IS_LOST", d.Err)
				}
				if d.UUID != m.GPUUUID(i) || d.Model != before.Devices[i].Model || d.Index != i {
					t.Errorf("lost GPU identity %d %s %q, want the last known", d.Index, d.UUID, d.Model)
				}
				if len(d.Processes) != 0 || d.EnergyMillijoules != device.Unknown {
					t.Errorf("lost GPU reports processes %v energy %d, want none and Unknown", d.Processes, d.EnergyMillijoules)
				}
				if len(d.Instances) != len(tt.mig[i]) {
					t.Errorf("lost GPU has %d instances, want its last %d", len(d.Instances), len(tt.mig[i]))
				}
			}
			for _, u := range s.Units() {
				if (u.ParentUUID == m.GPUUUID(tt.gpu)) != (u.Err != nil) {
					t.Errorf("unit %s: Err %v", u, u.Err)
				}
			}
			m.SetLost(tt.gpu, false)
			back := collect(t, c)
			if d := back.Devices[tt.gpu]; d.Err != nil || d.UUID != m.GPUUUID(tt.gpu) {
				t.Errorf("GPU back: err %v UUID %s", d.Err, d.UUID)
			}
		})
	}
}

func TestVanishedGPUIsReportedWithLastIdentity(t *testing.T) {
	m := dgx(t, nil)
	c := started(t, m)
	collect(t, c)
	m.SetPresent(2, false)
	s := collect(t, c)
	if len(s.Devices) != 8 {
		t.Fatalf("%d devices, want 8 (7 enumerated + the vanished one)", len(s.Devices))
	}
	var gone []device.Device
	for _, d := range s.Devices {
		if d.Err != nil {
			gone = append(gone, d)
		}
	}
	if len(gone) != 1 || gone[0].UUID != m.GPUUUID(2) || !errors.Is(gone[0].Err, nvml.ErrNotEnumerated) {
		t.Fatalf("devices with Err: %+v, want only GPU 2 with ErrNotEnumerated", gone)
	}
	// The GPUs after it were renumbered by NVML but keep their UUIDs.
	if d := s.Devices[2]; d.UUID != m.GPUUUID(3) || d.Err != nil {
		t.Errorf("NVML index 2 is %s (err %v), want GPU 3's %s", d.UUID, d.Err, m.GPUUUID(3))
	}
	m.SetPresent(2, true)
	s = collect(t, c)
	for i, d := range s.Devices {
		if d.Err != nil || d.UUID != m.GPUUUID(i) {
			t.Errorf("after return GPU %d: %s err %v", i, d.UUID, d.Err)
		}
	}
}

func TestMIGReconfigurationShowsNextCycle(t *testing.T) {
	m := dgx(t, map[int][]string{0: {"7g.80gb"}})
	c := started(t, m)
	old := collect(t, c).Devices[0].Instances[0].UUID
	steps := []struct {
		name    string
		layout  []string
		profile []string // nil: MIG off
	}{
		{"split", []string{"4g.40gb", "2g.20gb", "1g.10gb"}, []string{"4g.40gb", "2g.20gb", "1g.10gb"}},
		{"same layout again gives new instances", []string{"4g.40gb", "2g.20gb", "1g.10gb"}, []string{"4g.40gb", "2g.20gb", "1g.10gb"}},
		{"MIG off", nil, nil},
		{"MIG on again", []string{"1g.10gb"}, []string{"1g.10gb"}},
	}
	seen := map[string]bool{old: true}
	for _, st := range steps {
		if err := m.SetMIG(0, st.layout); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		d := collect(t, c).Devices[0]
		if d.Err != nil || d.MIGEnabled != (st.profile != nil) {
			t.Fatalf("%s: err %v MIG %v", st.name, d.Err, d.MIGEnabled)
		}
		var got, uuids []string
		for _, in := range d.Instances {
			got = append(got, in.Profile)
			uuids = append(uuids, in.UUID)
			if seen[in.UUID] {
				t.Errorf("%s: instance UUID %s reused", st.name, in.UUID)
			}
			seen[in.UUID] = true
		}
		if !slices.Equal(got, st.profile) || !slices.Equal(uuids, m.MIGUUIDs(0)) {
			t.Errorf("%s: profiles %v UUIDs %v, want %v %v", st.name, got, uuids, st.profile, m.MIGUUIDs(0))
		}
	}
}

func TestInitFailure(t *testing.T) {
	tests := []struct {
		ret  gonvml.Return
		says string
	}{
		{gonvml.ERROR_LIBRARY_NOT_FOUND, "NVML init failed: library not found (is the NVIDIA driver installed? libnvidia-ml.so.1): ERROR_LIBRARY_NOT_FOUND"},
		{gonvml.ERROR_DRIVER_NOT_LOADED, "driver not loaded"},
		{gonvml.ERROR_NO_PERMISSION, "/dev/nvidia"},
		{gonvml.ERROR_UNKNOWN, "NVML init failed"},
	}
	for _, tt := range tests {
		t.Run(tt.ret.String(), func(t *testing.T) {
			m := dgx(t, nil)
			m.SetInitError(tt.ret)
			c := nvml.New(m.Interface(), nvml.Options{})
			err := c.Start()
			if !errors.Is(err, tt.ret) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Start: %v, want it to wrap %v and say %q", err, tt.ret, tt.says)
			}
			if err2 := c.Start(); !errors.Is(err2, tt.ret) {
				t.Errorf("second Start: %v, want the same failure", err2)
			}
			if _, err := c.Collect(context.Background()); !errors.Is(err, tt.ret) {
				t.Errorf("Collect after failed Start: %v, want the init failure", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			// The simulated library panics on any call after a failed Init,
			// as the real one dies; the count survives any recover.
			if n := m.CallsAfterFailedInit(); n != 0 {
				t.Errorf("%d NVML calls after the failed Init, want none", n)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	m := dgx(t, nil)
	c := nvml.New(m.Interface(), nvml.Options{})
	if _, err := c.Collect(context.Background()); !errors.Is(err, nvml.ErrNotStarted) {
		t.Errorf("Collect before Start: %v, want ErrNotStarted", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Collect(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Collect with a done context: %v, want context.Canceled", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Collect(context.Background()); !errors.Is(err, nvml.ErrClosed) {
		t.Errorf("Collect after Close: %v, want ErrClosed", err)
	}
	// Shutdown happened: the library is uninitialized again.
	if _, ret := m.Interface().DeviceGetCount(); ret != gonvml.ERROR_UNINITIALIZED {
		t.Errorf("DeviceGetCount after Close: %v, want ERROR_UNINITIALIZED", ret)
	}
}

// TestCollectNeverPanics runs the collector on a bare go-nvml mock whose
// device implements nothing: every call panics inside the mock.
func TestCollectNeverPanics(t *testing.T) {
	lib := &mock.Interface{
		InitFunc:                   func() gonvml.Return { return gonvml.SUCCESS },
		ShutdownFunc:               func() gonvml.Return { return gonvml.SUCCESS },
		SystemGetDriverVersionFunc: func() (string, gonvml.Return) { return "1", gonvml.SUCCESS },
		DeviceGetCountFunc:         func() (int, gonvml.Return) { return 1, gonvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(int) (gonvml.Device, gonvml.Return) { return &mock.Device{}, gonvml.SUCCESS },
	}
	c := nvml.New(lib, nvml.Options{})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("Collect: %v, want an error saying NVML panicked", err)
	}
}

// TestCollectRacesWithWriter collects while another goroutine reprograms
// the machine; run with -race.
func TestCollectRacesWithWriter(t *testing.T) {
	m := dgx(t, map[int][]string{0: {"1g.10gb", "1g.10gb"}})
	c := started(t, m)
	collect(t, c) // every GPU seen once, so a lost one has an identity
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m.SetLost(3, i%2 == 0)
			m.SetUtilization(1, i%100)
			m.SetPower(1, int64(i))
			m.AdvanceEnergy(1000)
			_ = m.SetProcesses(m.GPUUUID(2), procs(uint32(i)))
			if i%10 == 0 {
				_ = m.SetMIG(0, [][]string{{"1g.10gb"}, {"3g.40gb", "1g.10gb"}}[i/10%2])
			}
			for _, u := range m.MIGUUIDs(0) {
				_ = m.SetProcesses(u, procs(uint32(i)))
			}
		}
	}()
	for range 200 {
		s := collect(t, c)
		if len(s.Devices) != 8 {
			t.Errorf("%d devices, want 8", len(s.Devices))
		}
		for i, d := range s.Devices {
			switch {
			case i == 3: // lost every other write
			case i == 0 && errors.Is(d.Err, gonvml.ERROR_INVALID_ARGUMENT):
				// Reconfigured more often than the collector re-enumerates.
			case d.Err != nil:
				t.Errorf("GPU %d: %v", i, d.Err)
			}
		}
	}
	close(stop)
	wg.Wait()
}
