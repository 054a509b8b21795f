package scenario

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestProcessWatcher follows processes of driverYAML across an ordinary
// end, a restart that keeps its PID (20002 at 20m) and a PID handed to
// another tenant at the same instant (777 at 40m): each handle says
// exited from the Apply that ended its process on, and never follows the
// process that took the PID next.
func TestProcessWatcher(t *testing.T) {
	s, err := Parse("driver.yaml", []byte(driverYAML))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDriver(s, filepath.Join(t.TempDir(), "host"))
	if err != nil {
		t.Fatal(err)
	}
	w := d.Watcher()
	at := func(off time.Duration) {
		t.Helper()
		if err := d.Apply(s.Start.Add(off)); err != nil {
			t.Fatal(err)
		}
	}
	watch := func(pid uint32) int {
		t.Helper()
		h, err := w.Watch(pid)
		if err != nil {
			t.Fatalf("Watch(%d): %v", pid, err)
		}
		return h
	}
	exited := func(hs ...int) []bool {
		t.Helper()
		out := make([]bool, len(hs))
		if err := w.Exited(hs, out); err != nil {
			t.Fatalf("Exited: %v", err)
		}
		return out
	}
	check := func(what string, got []bool, want ...bool) {
		t.Helper()
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: exited = %v, want %v", what, got, want)
				return
			}
		}
	}

	if _, err := w.Watch(20000); !errors.Is(err, errNotRunning) {
		t.Errorf("Watch before the first Apply: err = %v, want errNotRunning", err)
	}
	at(10 * time.Minute)
	slurm0, umbrella, k8s := watch(20002), watch(777), watch(20003)
	check("10m", exited(slurm0, umbrella, k8s), false, false, false)
	if _, err := w.Watch(20000); err == nil {
		t.Error("Watch(20000) after its process ended at 10m: no error")
	}

	at(20 * time.Minute) // slurm restarts on PID 20002; the pod ends
	slurm1 := watch(20002)
	check("20m", exited(slurm0, slurm1, umbrella, k8s), true, false, false, true)
	if slurm1 == slurm0 {
		t.Errorf("the restarted process on PID 20002 got the old handle %d", slurm0)
	}

	at(40 * time.Minute) // 777 passes from umbrella to acme at this instant
	acme := watch(777)
	check("40m", exited(umbrella, acme, slurm1), true, false, true)

	at(time.Hour) // everything has ended
	check("1h", exited(slurm0, slurm1, umbrella, acme, k8s), true, true, true, true, true)

	w.Release(acme) // holds nothing: the handle still answers
	check("released", exited(acme), true)
	if err := w.Exited([]int{len(s.procs)}, make([]bool, 1)); err == nil {
		t.Error("Exited with an unknown handle: no error")
	}
	if err := w.Exited([]int{acme, acme}, make([]bool, 1)); err == nil {
		t.Error("Exited with fewer answers than handles: no error")
	}
}
