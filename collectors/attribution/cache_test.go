package attribution

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/device"
)

const slurmRules = `rules:
  - cgroup: slurm
    tenant: job-${job}
  - user: bob
    tenant: bob
`

// TestCacheAndPIDReuse walks one PID through its lives. Each step changes
// the tree, attributes one snapshot holding the pids, and checks the tenant.
func TestCacheAndPIDReuse(t *testing.T) {
	h := newFakeHost(t, "root:x:0:0::/root:/bin/bash\n")
	a, err := New(mustConfig(t, slurmRules), h.root)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		change func()
		pids   []uint32
		want   string // tenant of pid 500 (first pid)
	}{
		{"first sight resolves", func() { h.proc(500, 1000, 0, "/system.slice/slurmstepd.scope/job_1/step_0/user/task_0") },
			[]uint32{500}, "job-1"},
		{"same start time: answered from the cache, cgroup not read again", func() {
			h.proc(500, 1000, 0, "/system.slice/slurmstepd.scope/job_99/step_0/user/task_0")
		}, []uint32{500}, "job-1"},
		{"new start time: PID reused, resolved afresh", func() {
			h.proc(500, 5000, 0, "/system.slice/slurmstepd.scope/job_2/step_0/user/task_0")
		}, []uint32{500}, "job-2"},
		{"absent from a snapshot: evicted", func() {}, []uint32{501}, ""},
		{"back with the same start time: resolved afresh after eviction", func() {
			h.proc(500, 5000, 0, "/system.slice/slurmstepd.scope/job_3/step_0/user/task_0")
		}, []uint32{500}, "job-3"},
		{"exited: unattributed and forgotten", func() { h.remove(500) }, []uint32{500}, Unattributed},
	}
	h.proc(501, 100, 0, "/system.slice/slurmstepd.scope/job_501/step_0/user/task_0")
	for _, st := range steps {
		st.change()
		var procs []device.Process
		for _, pid := range st.pids {
			procs = append(procs, proc(pid, 10))
		}
		obs := a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", procs...)))
		if st.want != "" {
			if got := obs[0].Shares[0].Tenant; got != st.want {
				t.Errorf("%s: tenant %q, want %q", st.name, got, st.want)
			}
		}
		// The cache holds exactly the matched processes of the last snapshot.
		for pid := range a.cache {
			if !containsPID(st.pids, pid) {
				t.Errorf("%s: cache still holds pid %d, not in the last snapshot", st.name, pid)
			}
		}
		if _, ok := a.cache[500]; ok != (st.want != Unattributed && containsPID(st.pids, 500)) {
			t.Errorf("%s: pid 500 cached = %v", st.name, ok)
		}
	}
}

func containsPID(pids []uint32, pid uint32) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func TestStartTimeComesFromStatField22(t *testing.T) {
	h := newFakeHost(t, "")
	h.proc(42, 123456, 0, "/")
	start, err := newHostProc(h.root).startTime(newHostProc(h.root).withEnv(context.Background()), 42)
	if err != nil {
		t.Fatal(err)
	}
	// The raw kernel value, clock ticks since boot: an identity, not a time.
	if start != 123456 {
		t.Errorf("start time %d ticks, want 123456", start)
	}
}

func TestPasswdChangeIsPickedUp(t *testing.T) {
	h := newFakeHost(t, "root:x:0:0::/root:/bin/bash\n")
	h.proc(600, 1000, 1001, "/user.slice/user-1001.slice/session-4.scope")
	a, err := New(mustConfig(t, slurmRules), h.root)
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot(wholeGPU("GPU-0", proc(600, 10)))
	if got := a.Attribute(context.Background(), snap)[0].Shares[0].Tenant; got != Unattributed {
		t.Fatalf("before bob exists: tenant %q, want %q", got, Unattributed)
	}
	h.write("etc/passwd", "root:x:0:0::/root:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\n")
	// The size changed; move mtime too, as a same-size edit would.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(h.root, "etc/passwd"), later, later); err != nil {
		t.Fatal(err)
	}
	if got := a.Attribute(context.Background(), snap)[0].Shares[0].Tenant; got != "bob" {
		t.Errorf("after bob was added: tenant %q, want bob", got)
	}
	// passwd gone: the last good table stays in use.
	if err := os.Remove(filepath.Join(h.root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	delete(a.cache, 600)
	if got := a.Attribute(context.Background(), snap)[0].Shares[0].Tenant; got != "bob" {
		t.Errorf("after passwd vanished: tenant %q, want bob (last good table)", got)
	}
}

func TestAttributeConcurrentCalls(t *testing.T) {
	h := newFakeHost(t, "bob:x:1001:1001::/home/bob:/bin/bash\n")
	h.proc(700, 10, 0, "/system.slice/slurmstepd.scope/job_7/step_0/user/task_0")
	h.proc(701, 10, 1001, "/user.slice/user-1001.slice/session-1.scope")
	a, err := New(mustConfig(t, slurmRules), h.root)
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot(wholeGPU("GPU-0", proc(700, 10), proc(701, 30)))
	want := "GPU-0: split=utilization [bob user w=30 pids=[701]] [job-7 cgroup:slurm w=10 pids=[700]]\n"
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if got := render(a.Attribute(context.Background(), snap)); got != want {
					errs <- got
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for got := range errs {
		t.Errorf("concurrent Attribute: got %s want %s", got, want)
	}
}
