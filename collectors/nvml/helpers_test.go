package nvml_test

import (
	"context"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
	"github.com/gpumeter/gpumeter/internal/clock"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// started is a collector over m, started, closed at the test's end.
func started(t testing.TB, m *sim.Machine) *nvml.Collector {
	t.Helper()
	return startedOn(t, m.Interface())
}

func startedOn(t testing.TB, lib gonvml.Interface) *nvml.Collector {
	t.Helper()
	c := nvml.New(lib, nvml.Options{Clock: clock.NewVirtual(t0)})
	if err := c.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func collect(t testing.TB, c *nvml.Collector) device.Snapshot {
	t.Helper()
	s, err := c.Collect(context.Background())
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return s
}

func dgx(t testing.TB, mig map[int][]string) *sim.Machine {
	t.Helper()
	m, err := sim.DGXH100(mig)
	if err != nil {
		t.Fatalf("DGXH100: %v", err)
	}
	return m
}

// deviceByUUID finds a device in a snapshot; it fails the test if absent.
func deviceByUUID(t testing.TB, s device.Snapshot, uuid string) device.Device {
	t.Helper()
	for _, d := range s.Devices {
		if d.UUID == uuid {
			return d
		}
	}
	t.Fatalf("device %s not in snapshot (%d devices)", uuid, len(s.Devices))
	return device.Device{}
}

// unitPIDs maps each unit's UUID to its processes' PIDs.
func unitPIDs(s device.Snapshot) map[string][]uint32 {
	out := map[string][]uint32{}
	for _, u := range s.Units() {
		pids := []uint32{}
		for _, p := range u.Processes {
			pids = append(pids, p.PID)
		}
		out[u.UUID] = pids
	}
	return out
}

func procs(pids ...uint32) []device.Process {
	out := make([]device.Process, len(pids))
	for i, p := range pids {
		out[i] = device.Process{PID: p, UsedMemoryBytes: 1 << 30, SMUtil: device.Unknown}
	}
	return out
}
