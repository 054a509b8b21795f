package agent

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
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
		// Built checking start times only (no watcher); the watched run
		// replaces the attributor with one given the driver's watcher.
		p, sc, vclock, drv := scenarioPipeline(t, "../configs/scenarios/dgx-h100-day.yaml", "n", 30*time.Second,
			attribution.WithProcessWatcher(nil))
		w := &countingWatcher{ProcessWatcher: drv.Watcher()}
		if watch {
			attr, err := attribution.New(sc.Attribution, drv.HostRoot(), attribution.WithSqueue(drv.Squeue()), attribution.WithProcessWatcher(w))
			if err != nil {
				t.Fatal(err)
			}
			p.Attributor = attr
		}
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
