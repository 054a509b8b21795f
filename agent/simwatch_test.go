package agent

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

// countingWatcher counts the processes the attributor asked about.
type countingWatcher struct {
	attribution.ProcessWatcher
	asked int
}

func (w *countingWatcher) Exited(handles []int, exited []bool) error {
	w.asked += len(handles)
	return w.ProcessWatcher.Exited(handles, exited)
}

// TestSimulatorWatcherMetersAsStartTimes meters the DGX H100 day's first
// 3 h 10 min twice, each on its own simulated machine: once with the
// simulator's process watcher (what a simulated agent uses) and once
// checking every known process's start time in the fake /proc (what it
// did before). The records must be the same, across GPU 1's hourly
// restarts that keep their PIDs and GPU 5's PID handed to another tenant
// at 3:00; and the watcher must have been asked, or the test would compare
// the fallback with itself.
func TestSimulatorWatcherMetersAsStartTimes(t *testing.T) {
	run := func(watch bool) ([]protocol.Record, int) {
		sc, err := scenario.Load("../configs/scenarios/dgx-h100-day.yaml")
		if err != nil {
			t.Fatal(err)
		}
		drv, err := scenario.NewDriver(sc, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		vclock := clock.NewVirtual(sc.Start)
		col := nvml.New(drv.Machine().Interface(), nvml.Options{Clock: vclock})
		if err := col.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = col.Close() }()
		w := &countingWatcher{ProcessWatcher: drv.Watcher()}
		var pw attribution.ProcessWatcher // nil: start times only
		if watch {
			pw = w
		}
		attr, err := attribution.New(sc.Attribution, drv.HostRoot(), attribution.WithSqueue(drv.Squeue()), attribution.WithProcessWatcher(pw))
		if err != nil {
			t.Fatal(err)
		}
		mt, err := meter.New(meter.Options{Node: "n", Provider: "p", Window: time.Minute, MaxHold: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		p := &Pipeline{Collector: &drivenCollector{drv: drv, c: col, clock: vclock}, Attributor: attr, Meter: mt, Clock: vclock}
		var recs []protocol.Record
		end := sc.Start.Add(3*time.Hour + 10*time.Minute)
		for at := sc.Start; at.Before(end); at = at.Add(10 * time.Second) {
			vclock.Set(at)
			r, err := p.Cycle(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r...)
		}
		vclock.Set(end)
		return append(recs, p.Stop()...), w.asked
	}
	watched, asked := run(true)
	fallback, _ := run(false)
	if asked == 0 {
		t.Fatal("the attributor never asked the simulator's watcher")
	}
	if len(watched) == 0 || !reflect.DeepEqual(watched, fallback) {
		t.Fatalf("records differ: %d with the watcher, %d checking start times", len(watched), len(fallback))
	}
}
