package nvml_test

import (
	"slices"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

func TestCollectFindsEveryGPU(t *testing.T) {
	m := dgx(t, nil)
	s := collect(t, started(t, m))
	if !s.Time.Equal(t0) {
		t.Errorf("snapshot time %v, want the clock's %v", s.Time, t0)
	}
	if len(s.Devices) != 8 {
		t.Fatalf("%d devices, want 8", len(s.Devices))
	}
	seen := map[string]bool{}
	for i, d := range s.Devices {
		if d.Index != i || d.UUID != m.GPUUUID(i) {
			t.Errorf("device %d: index %d UUID %s, want %s", i, d.Index, d.UUID, m.GPUUUID(i))
		}
		if seen[d.UUID] {
			t.Errorf("UUID %s twice", d.UUID)
		}
		seen[d.UUID] = true
		if d.Model != "NVIDIA H100 80GB HBM3" || d.MemoryTotalBytes != 80<<30 {
			t.Errorf("device %d: model %q memory %d", i, d.Model, d.MemoryTotalBytes)
		}
		if d.MIGEnabled || d.Err != nil || len(d.Instances) != 0 {
			t.Errorf("device %d: MIG %v err %v instances %d, want a plain readable GPU", i, d.MIGEnabled, d.Err, len(d.Instances))
		}
	}
}

func TestCollectMIGLayouts(t *testing.T) {
	tests := []struct {
		name   string
		model  string
		layout []string
		slices []int
		total  int
	}{
		{"H100 mixed", "", []string{"3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"}, []int{3, 2, 1, 1}, 7},
		{"H100 full", "H100-SXM5-80GB", []string{"7g.80gb"}, []int{7}, 7},
		{"H100 partly used", "", []string{"4g.40gb", "1g.20gb"}, []int{4, 1}, 7},
		{"A100 40GB", "A100-SXM4-40GB", []string{"3g.20gb", "2g.10gb", "1g.5gb"}, []int{3, 2, 1}, 7},
		{"A100 80GB", "A100-SXM4-80GB", []string{"4g.40gb", "3g.40gb"}, []int{4, 3}, 7},
		{"H200", "H200-SXM5-141GB", []string{"3g.71gb", "3g.71gb", "1g.18gb"}, []int{3, 3, 1}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sim.NewMachine(sim.GPUSpec{Model: tt.model, MIG: tt.layout}, sim.GPUSpec{Model: tt.model})
			if err != nil {
				t.Fatal(err)
			}
			s := collect(t, started(t, m))
			d := deviceByUUID(t, s, m.GPUUUID(0))
			if !d.MIGEnabled || len(d.Instances) != len(tt.layout) {
				t.Fatalf("MIG %v with %d instances, want %d", d.MIGEnabled, len(d.Instances), len(tt.layout))
			}
			want := m.MIGUUIDs(0)
			for j, in := range d.Instances {
				if in.UUID != want[j] || in.Profile != tt.layout[j] || in.Slices != tt.slices[j] || in.TotalSlices != tt.total {
					t.Errorf("instance %d: %s %s %d/%d, want %s %s %d/%d", j,
						in.UUID, in.Profile, in.Slices, in.TotalSlices, want[j], tt.layout[j], tt.slices[j], tt.total)
				}
			}
			units := s.Units()
			if len(units) != len(tt.layout)+1 {
				t.Fatalf("%d units, want %d", len(units), len(tt.layout)+1)
			}
			for j := range tt.layout {
				u := units[j]
				if u.ParentUUID != d.UUID || u.SliceNum != tt.slices[j] || u.SliceDen != tt.total {
					t.Errorf("unit %d: parent %s share %d/%d", j, u.ParentUUID, u.SliceNum, u.SliceDen)
				}
			}
			if whole := units[len(tt.layout)]; whole.UUID != m.GPUUUID(1) || whole.SliceNum != 1 || whole.SliceDen != 1 {
				t.Errorf("whole GPU unit %s share %d/%d", whole.UUID, whole.SliceNum, whole.SliceDen)
			}
		})
	}
}

// TestProfileNamesMatchSimulator checks the collector's derived profile
// names against the names of every profile of every simulated model, so a
// layout written in a scenario reads back under the same name.
func TestProfileNamesMatchSimulator(t *testing.T) {
	for _, model := range sim.Models() {
		profiles, err := sim.Profiles(model)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range profiles {
			t.Run(model+"/"+p, func(t *testing.T) {
				m, err := sim.NewMachine(sim.GPUSpec{Model: model, MIG: []string{p}})
				if err != nil {
					t.Fatal(err)
				}
				d := collect(t, started(t, m)).Devices[0]
				if len(d.Instances) != 1 || d.Instances[0].Profile != p {
					t.Fatalf("instances %+v, want one %s", d.Instances, p)
				}
			})
		}
	}
}

func TestProcessesLandOnTheirUnits(t *testing.T) {
	m := dgx(t, map[int][]string{0: {"3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"}})
	mig := m.MIGUUIDs(0)
	set := map[string][]uint32{
		mig[0]:       {100, 101},
		mig[3]:       {102},
		m.GPUUUID(1): {200},
		m.GPUUUID(7): {700, 701, 702},
	}
	for unit, pids := range set {
		if err := m.SetProcesses(unit, procs(pids...)); err != nil {
			t.Fatal(err)
		}
	}
	got := unitPIDs(collect(t, started(t, m)))
	if len(got) != 4+7 {
		t.Fatalf("%d units, want 11", len(got))
	}
	for unit, pids := range got {
		want := set[unit]
		slices.Sort(pids)
		if len(want) == 0 && len(pids) == 0 {
			continue
		}
		if !slices.Equal(pids, want) {
			t.Errorf("unit %s: PIDs %v, want %v", unit, pids, want)
		}
	}
}

func TestProcessUtilization(t *testing.T) {
	tests := []struct {
		name string
		util []int // per process, device.Unknown: no sample
		want []int
	}{
		{"known", []int{40, 0}, []int{40, 0}},
		{"no samples is NOT_FOUND, not an error", []int{device.Unknown, device.Unknown}, []int{device.Unknown, device.Unknown}},
		{"garbage clamped", []int{250, 100}, []int{100, 100}},
		{"some without sample", []int{30, device.Unknown}, []int{30, device.Unknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := dgx(t, nil)
			ps := make([]device.Process, len(tt.util))
			for i, u := range tt.util {
				ps[i] = device.Process{PID: uint32(1000 + i), SMUtil: u}
			}
			if err := m.SetProcesses(m.GPUUUID(2), ps); err != nil {
				t.Fatal(err)
			}
			c := started(t, m)
			// Twice: the second cycle asks only for samples newer than the
			// first's, and must still see them.
			for cycle := range 2 {
				d := collect(t, c).Devices[2]
				if d.Err != nil {
					t.Fatalf("cycle %d: Err %v", cycle, d.Err)
				}
				got := make([]int, len(d.Processes))
				for i, p := range d.Processes {
					got[i] = p.SMUtil
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("cycle %d: SMUtil %v, want %v", cycle, got, tt.want)
				}
			}
		})
	}
}

func TestDeviceReadings(t *testing.T) {
	m := dgx(t, map[int][]string{1: {"7g.80gb"}})
	m.SetUtilization(0, 73)
	m.SetPower(0, 350_000)
	m.AddEnergy(0, 5_000)
	m.AdvanceEnergy(2_500_000_000) // 2.5 s at 350 W = 875 J
	m.SetUtilization(2, device.Unknown)
	m.SetEnergySupported(2, false)
	s := collect(t, started(t, m))
	tests := []struct {
		name              string
		gpu               int
		util              int
		powerMW, energyMJ int64
	}{
		{"reported", 0, 73, 350_000, 880_000},
		{"MIG mode has no whole-GPU utilization", 1, device.Unknown, 0, 0},
		{"not supported is Unknown", 2, device.Unknown, 0, device.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Devices[tt.gpu]
			if d.Err != nil || d.UtilizationPercent != tt.util || d.PowerMilliwatts != tt.powerMW || d.EnergyMillijoules != tt.energyMJ {
				t.Errorf("err %v util %d power %d energy %d, want util %d power %d energy %d",
					d.Err, d.UtilizationPercent, d.PowerMilliwatts, d.EnergyMillijoules, tt.util, tt.powerMW, tt.energyMJ)
			}
		})
	}
}

func TestMemoryUsedSumsProcesses(t *testing.T) {
	m := dgx(t, map[int][]string{0: {"1g.10gb", "1g.10gb"}})
	mig := m.MIGUUIDs(0)
	for _, u := range []string{mig[0], mig[1], m.GPUUUID(1)} {
		if err := m.SetProcesses(u, procs(1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	s := collect(t, started(t, m))
	for i, want := range []uint64{4 << 30, 2 << 30, 0} {
		if got := s.Devices[i].MemoryUsedBytes; got != want {
			t.Errorf("GPU %d: used %d bytes, want %d", i, got, want)
		}
	}
	if got := s.Devices[0].Instances[0].MemoryBytes; got != 10<<30 {
		t.Errorf("1g.10gb instance memory %d, want %d", got, uint64(10<<30))
	}
}

// TestProfileNameMatchesDriverNames checks the derivation against profile
// names the driver prints, with the mock tables' memory sizes and with
// driver-like ones (totals a little under the nominal size).
func TestProfileNameMatchesDriverNames(t *testing.T) {
	const a100x40, a100x80, h100, h200 = 40960 << 20, 81920 << 20, 81559 << 20, 143771 << 20
	tests := []struct {
		name          string
		slices        int
		memoryMB, gpu uint64
	}{
		{"1g.5gb", 1, 4864, a100x40},
		{"3g.20gb", 3, 19968, a100x40},
		{"7g.40gb", 7, 40192, a100x40},
		{"1g.10gb", 1, 9856, a100x80},
		{"4g.40gb", 4, 40192, a100x80},
		{"7g.80gb", 7, 80384, a100x80},
		{"1g.10gb", 1, 9856, h100},
		{"1g.20gb", 1, 19968, h100},
		{"3g.40gb", 3, 40448, h100},
		{"7g.80gb", 7, 80896, h100},
		{"1g.18gb", 1, 16384, h200},
		{"3g.71gb", 3, 69632, h200},
		{"7g.141gb", 7, 140544, h200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nvml.ProfileName(tt.slices, tt.memoryMB, tt.gpu); got != tt.name {
				t.Errorf("ProfileName(%d, %d, %d) = %q, want %q", tt.slices, tt.memoryMB, tt.gpu, got, tt.name)
			}
			if got := sim.ProfileName(tt.slices, tt.memoryMB, tt.gpu); got != tt.name {
				t.Errorf("sim.ProfileName(%d, %d, %d) = %q, want %q", tt.slices, tt.memoryMB, tt.gpu, got, tt.name)
			}
		})
	}
}
