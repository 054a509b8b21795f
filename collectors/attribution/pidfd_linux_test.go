package attribution

import (
	"context"
	"math"
	"os"
	"os/exec"
	"testing"
)

// kernelWatcher is the pidfd watcher, or a skip where the kernel has no
// pidfd_open (before 5.3, or a seccomp profile refusing it).
func kernelWatcher(t *testing.T) *pidfdWatcher {
	t.Helper()
	w := newPidfdWatcher("/")
	if w == nil {
		t.Skip("pidfd_open is not available here: the start time check is all there is")
	}
	return w
}

// startSleeper starts a real child process that lives until killed.
func startSleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestPidfdWatcherSeesExit(t *testing.T) {
	w := kernelWatcher(t)
	cmd := startSleeper(t)
	fd, err := w.Watch(uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	exited := []bool{true}
	if err := w.Exited([]int{fd}, exited); err != nil || exited[0] {
		t.Fatalf("live child: exited %v, %v", exited[0], err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: its PID is free for reuse now
	if err := w.Exited([]int{fd}, exited); err != nil || !exited[0] {
		t.Errorf("killed and reaped child: exited %v, %v; want true", exited[0], err)
	}
	w.Release(fd)
	if len(w.held) != 0 {
		t.Errorf("held %v after Release", w.held)
	}
	if _, err := w.Watch(math.MaxInt32); err == nil {
		t.Error("Watch of a PID no process has: no error")
	}
}

func TestOwnProc(t *testing.T) {
	if !ownProc("/") {
		t.Error(`ownProc("/") = false: /proc/self is not this process`)
	}
	if ownProc(t.TempDir()) {
		t.Error("ownProc of an empty tree = true")
	}
}

// TestAttributeWithPidfds: a real child process, its facts in a fake tree
// under its real PID. While it lives the tree is not read; once it has
// exited and been reaped, the PID is read afresh, and the new watch on the
// dead PID fails, so the start time check takes over for it.
func TestAttributeWithPidfds(t *testing.T) {
	w := kernelWatcher(t)
	cmd := startSleeper(t)
	pid := uint32(cmd.Process.Pid)
	h := newFakeHost(t, "")
	h.proc(pid, 1000, 0, slurmCgroup("1"))
	a, err := New(mustConfig(t, jobRule), h.root, WithProcessWatcher(w))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	tenant := func() string {
		t.Helper()
		return a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(pid, 10))))[0].Shares[0].Tenant
	}
	if got := tenant(); got != "job-1" || !a.cache[pid].watched {
		t.Fatalf("first sight: %q, watched %v; want job-1, watched", got, a.cache[pid].watched)
	}
	h.remove(pid)
	if got := tenant(); got != "job-1" {
		t.Errorf("alive, its /proc entry gone: %q, want job-1 without reading /proc", got)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	h.proc(pid, 2000, 0, slurmCgroup("2"))
	if got := tenant(); got != "job-2" {
		t.Errorf("exited, PID taken again: %q, want job-2", got)
	}
	if a.cache[pid].watched {
		t.Error("a PID whose process is gone is watched: pidfd_open should have refused it")
	}
	h.proc(pid, 3000, 0, slurmCgroup("3"))
	if got := tenant(); got != "job-3" {
		t.Errorf("unwatched, PID reused again: %q, want job-3 by the start time check", got)
	}
	if err := a.Close(); err != nil || len(w.held) != 0 {
		t.Errorf("Close: %v, pidfds still held %v", err, w.held)
	}
}

// BenchmarkAttributeWatched is the same node with the kernel's pidfd
// watcher (watch.go): the processes' facts are in a fake /proc, so each
// fake PID is followed by a real pidfd of the benchmark's own process,
// which lives; every call polls the 200 pidfds once and reads nothing
// from /proc.
func BenchmarkAttributeWatched(b *testing.B) {
	sw := PidfdStandIn(uint32(os.Getpid()))
	if sw == nil {
		b.Skip("pidfd_open is not available here")
	}
	w := sw.(*pidfdWatcher)
	a := benchAttribute(b, WithProcessWatcher(w))
	if len(w.held) != 200 {
		b.Fatalf("%d pidfds held, want one per process (200)", len(w.held))
	}
	_ = a.Close()
}
