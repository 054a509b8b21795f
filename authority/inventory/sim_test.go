package inventory_test

import (
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/authority/inventory"
	"github.com/gpumeter/gpumeter/collectors/sim"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
)

// The simulator is authoritative for the models it simulates: the table
// must know each one under the name the simulated NVML reports, with the
// profiles the simulator accepts, their slices and instance limits, and a
// power envelope that fits what simulated scenarios draw. Otherwise the
// end-to-end tests (agent on the simulator → authority) would refuse or
// hold honest simulated usage.

// simGPU is what the simulated NVML says of one model's GPU.
type simGPU struct {
	id, name string
	// profiles: name as the agent derives it → slices and the largest
	// instance count of any GPU instance profile of that name (a +me
	// variant reads back under its base name, so the base's count bounds
	// both).
	profiles    map[string]inventory.Profile
	totalSlices int
	accepted    []string // sim.Profiles: the names a layout may use
}

func readSim(t *testing.T) []simGPU {
	t.Helper()
	var out []simGPU
	for _, id := range sim.Models() {
		m, err := sim.NewMachine(sim.GPUSpec{Model: id})
		if err != nil {
			t.Fatal(err)
		}
		lib := m.Interface()
		if ret := lib.Init(); ret != nvml.SUCCESS {
			t.Fatalf("%s: init: %v", id, ret)
		}
		dev, ret := lib.DeviceGetHandleByIndex(0)
		if ret != nvml.SUCCESS {
			t.Fatalf("%s: device 0: %v", id, ret)
		}
		g := simGPU{id: id, profiles: map[string]inventory.Profile{}}
		if g.name, ret = dev.GetName(); ret != nvml.SUCCESS {
			t.Fatalf("%s: name: %v", id, ret)
		}
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			t.Fatalf("%s: memory: %v", id, ret)
		}
		for pid := range nvml.GPU_INSTANCE_PROFILE_COUNT {
			info, ret := dev.GetGpuInstanceProfileInfo(pid)
			if ret == nvml.ERROR_NOT_SUPPORTED {
				continue
			}
			if ret != nvml.SUCCESS {
				t.Fatalf("%s: profile %d: %v", id, pid, ret)
			}
			name := sim.ProfileName(int(info.SliceCount), info.MemorySizeMB, mem.Total)
			p := g.profiles[name]
			p.Slices = int(info.SliceCount)
			p.MaxInstances = max(p.MaxInstances, int(info.InstanceCount))
			g.profiles[name] = p
			g.totalSlices = max(g.totalSlices, p.Slices)
		}
		if g.accepted, err = sim.Profiles(id); err != nil {
			t.Fatal(err)
		}
		lib.Shutdown()
		out = append(out, g)
	}
	if len(out) == 0 {
		t.Fatal("the simulator lists no models")
	}
	return out
}

func TestSimulatedModelsInTable(t *testing.T) {
	for _, g := range readSim(t) {
		t.Run(g.id, func(t *testing.T) {
			m := mustLookup(t, g.id)
			if m.ID != g.id {
				t.Fatalf("Lookup(%q) = %s", g.id, m.ID)
			}
			byName, ok := inventory.Lookup(g.name)
			if !ok || byName.ID != g.id {
				t.Errorf("Lookup(NVML name %q) = %q, %v; want %s", g.name, byName.ID, ok, g.id)
			}
			if !m.MIG || m.TotalSlices != g.totalSlices {
				t.Errorf("MIG %v, total slices %d; the simulator has %d", m.MIG, m.TotalSlices, g.totalSlices)
			}
			for _, name := range g.accepted {
				want, ok := g.profiles[name]
				if !ok {
					t.Fatalf("simulator accepts %q but reports no such profile", name)
				}
				got, ok := m.Profiles[name]
				if !ok {
					t.Errorf("profile %q: not in the table", name)
					continue
				}
				if got != want {
					t.Errorf("profile %q: table %+v, simulator %+v", name, got, want)
				}
			}
			for name := range m.Profiles {
				if !slices.Contains(g.accepted, name) {
					t.Errorf("profile %q: in the table, the simulator does not accept it", name)
				}
			}
		})
	}
}

// CheckLayout accepts exactly the layouts the simulator builds, over every
// layout of up to two profiles (each up to 8 times).
func TestCheckLayoutAgreesWithSimulator(t *testing.T) {
	for _, g := range readSim(t) {
		t.Run(g.id, func(t *testing.T) {
			m := mustLookup(t, g.id)
			for _, p := range g.accepted {
				for _, q := range g.accepted {
					if q < p {
						continue
					}
					for a := 1; a <= 8; a++ {
						for b := 0; a+b <= 8 && (q != p || b == 0); b++ {
							layout := slices.Concat(slices.Repeat([]string{p}, a), slices.Repeat([]string{q}, b))
							_, simErr := sim.NewMachine(sim.GPUSpec{Model: g.id, MIG: layout})
							tableErr := m.CheckLayout(layout)
							if (simErr == nil) != (tableErr == nil) {
								t.Errorf("layout %v: simulator %v, table %v", layout, simErr, tableErr)
							}
						}
					}
				}
			}
		})
	}
}

func TestSimulatedPowerFitsModel(t *testing.T) {
	idleMW := int64(scenario.IdlePowerWatts) * 1000
	for _, id := range sim.Models() {
		t.Run(id, func(t *testing.T) {
			m := mustLookup(t, id)
			simMax, err := sim.MaxPowerWatts(id)
			if err != nil {
				t.Fatal(err)
			}
			// The simulator's job power at utilization u (scenario.Job's
			// default), up to the model's limit.
			jobMW := func(u int64) int64 {
				return (scenario.IdlePowerWatts + (int64(simMax)-scenario.IdlePowerWatts)*u/100) * 1000
			}
			for _, ms := range []int64{1, 1000, 10_000, 3_600_000, 86_400_000} {
				if !m.AtOrBelowIdle(idleMW*ms/1000, ms) {
					t.Errorf("a simulated idle GPU (%d mW) over %d ms is not at or below the floor %d mW",
						idleMW, ms, m.IdleFloorMilliwatts)
				}
				for u := int64(5); u <= 100; u++ {
					if m.AtOrBelowIdle(jobMW(u)*ms/1000, ms) {
						t.Fatalf("a simulated job at %d%% (%d mW) over %d ms is at or below the floor %d mW",
							u, jobMW(u), ms, m.IdleFloorMilliwatts)
					}
				}
			}
			if int64(simMax)*1000 > m.MaxPowerMilliwatts {
				t.Fatalf("simulated jobs draw up to %d W, %s's maximum is %d mW", simMax, id, m.MaxPowerMilliwatts)
			}
			for _, ms := range []int64{1, 1000, 10_000, 3_600_000, 86_400_000} {
				if e := jobMW(100) * ms / 1000; e > m.MaxEnergyMillijoules(ms) {
					t.Errorf("a simulated job at full power over %d ms (%d mJ) exceeds the model's %d mJ",
						ms, e, m.MaxEnergyMillijoules(ms))
				}
			}
		})
	}
}
