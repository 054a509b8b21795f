package attribution

import (
	"context"
	"errors"
	"testing"
)

// stubWatcher stands in for the kernel's pidfds: a process is followed
// unless refuse says no, and exits when the test says so.
type stubWatcher struct {
	refuse   map[uint32]bool // Watch fails for these
	exited   map[int]bool    // Exited reports these handles (exit)
	failNext bool            // the next Exited fails
	// raceExit: the process exits between Watch and the check after its
	// facts were read (the first single-handle Exited).
	raceExit map[uint32]bool
	pidOf    map[int]uint32 // open handles
	next     int
	watched  []uint32 // every Watch, in order
}

func newStubWatcher() *stubWatcher {
	return &stubWatcher{refuse: map[uint32]bool{}, exited: map[int]bool{}, raceExit: map[uint32]bool{}, pidOf: map[int]uint32{}}
}

func (w *stubWatcher) Watch(pid uint32) (int, error) {
	w.watched = append(w.watched, pid)
	if w.refuse[pid] {
		return 0, errors.New("operation not permitted")
	}
	w.next++
	w.pidOf[w.next] = pid
	return w.next, nil
}

func (w *stubWatcher) Exited(handles []int, exited []bool) error {
	if w.failNext {
		w.failNext = false
		return errors.New("poll: bad file descriptor")
	}
	for i, h := range handles {
		pid, ok := w.pidOf[h]
		if !ok {
			return errors.New("handle not open")
		}
		exited[i] = w.exited[h]
		if len(handles) == 1 && w.raceExit[pid] {
			delete(w.raceExit, pid)
			exited[i] = true
		}
	}
	return nil
}

func (w *stubWatcher) Release(h int) { delete(w.pidOf, h) }

// exit ends the process pid: the handles open on it report it exited; a
// later process with the same PID gets handles of its own.
func (w *stubWatcher) exit(pid uint32) {
	for h, p := range w.pidOf {
		if p == pid {
			w.exited[h] = true
		}
	}
}

const jobRule = `rules:
  - cgroup: slurm
    tenant: job-${job}
`

func slurmCgroup(job string) string {
	return "/system.slice/slurmstepd.scope/job_" + job + "/step_0/user/task_0"
}

// TestWatchedProcessSkipsProc walks watched processes through exit, PID
// reuse, a process the watcher cannot follow, a watcher that fails, and
// a process that exits while it is read.
func TestWatchedProcessSkipsProc(t *testing.T) {
	h := newFakeHost(t, "")
	w := newStubWatcher()
	a, err := New(mustConfig(t, jobRule), h.root, WithProcessWatcher(w))
	if err != nil {
		t.Fatal(err)
	}
	tenant := func(pid uint32) string {
		t.Helper()
		return a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(pid, 10))))[0].Shares[0].Tenant
	}
	h.proc(500, 1000, 0, slurmCgroup("1"))
	if got := tenant(500); got != "job-1" || len(w.watched) != 1 || len(w.pidOf) != 1 {
		t.Fatalf("first sight: %q, watched %v, open %v; want job-1, watched once", got, w.watched, w.pidOf)
	}
	// Alive: /proc is not read at all (its entry is gone from the fake
	// tree, and the answer still comes).
	h.remove(500)
	if got := tenant(500); got != "job-1" {
		t.Errorf("watched and alive, /proc/500 absent: %q, want job-1 without reading /proc", got)
	}
	// Exited, and the PID taken by another process: read afresh, a new
	// watch, the old one released.
	w.exit(500)
	h.proc(500, 5000, 0, slurmCgroup("2"))
	if got := tenant(500); got != "job-2" || len(w.watched) != 2 || len(w.pidOf) != 1 {
		t.Errorf("after exit and reuse: %q, watched %v, open %v; want job-2, a second watch, one open", got, w.watched, w.pidOf)
	}
	// A process the watcher cannot follow (EPERM): attributed, and
	// checked by its start time at every poll, so reuse is still seen.
	w.refuse[600] = true
	h.proc(600, 100, 0, slurmCgroup("6"))
	if got := tenant(600); got != "job-6" || a.cache[600].watched {
		t.Errorf("unwatchable: %q, watched %v; want job-6, not watched", got, a.cache[600].watched)
	}
	h.proc(600, 200, 0, slurmCgroup("7"))
	if got := tenant(600); got != "job-7" {
		t.Errorf("unwatchable, PID reused: %q, want job-7 by the start time check", got)
	}
	if len(w.pidOf) != 0 {
		t.Errorf("open handles %v after pid 500 left the snapshot, want none", w.pidOf)
	}
	// The watcher fails for one poll: every process is checked by its
	// start time, so a reuse is caught all the same.
	h.proc(700, 1, 0, slurmCgroup("70"))
	if got := tenant(700); got != "job-70" {
		t.Fatalf("pid 700: %q", got)
	}
	w.failNext = true
	h.proc(700, 2, 0, slurmCgroup("71"))
	if got := tenant(700); got != "job-71" {
		t.Errorf("watcher failing, PID reused: %q, want job-71 by the start time check", got)
	}
	// Exits while its facts are read: attributed this poll, not kept.
	w.raceExit[800] = true
	h.proc(800, 1, 0, slurmCgroup("80"))
	if got := tenant(800); got != "job-80" {
		t.Errorf("exited while read: %q, want job-80 for this poll", got)
	}
	if _, ok := a.cache[800]; ok {
		t.Error("a process that exited while it was read is cached")
	}
	if err := a.Close(); err != nil || len(a.cache) != 0 || len(w.pidOf) != 0 {
		t.Errorf("after Close: %v, cache %v, open %v; want both empty", err, a.cache, w.pidOf)
	}
}

// TestFakeTreeFallsBack: a host root without its own proc/self (the
// simulator's tree, another PID namespace) gets no watcher: its PIDs are
// not the kernel's.
func TestFakeTreeFallsBack(t *testing.T) {
	h := newFakeHost(t, "")
	a, err := New(mustConfig(t, jobRule), h.root)
	if err != nil {
		t.Fatal(err)
	}
	if a.watcher != nil {
		t.Errorf("fake tree: watcher %T, want none (start time checks)", a.watcher)
	}
}
