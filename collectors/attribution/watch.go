package attribution

// Process watching: the attributor's fast path for processes it already
// knows. Without a watcher every poll reads /proc/<pid>/stat of every GPU
// process to tell a live process from a PID reused by another (the start
// time check): three system calls and a parse per process per poll, 92% of
// a DGX H100's metering cycle. A ProcessWatcher follows each resolved
// process instead, and one call per poll says which of them exited; only
// new PIDs (and those the watcher could not follow) are read from /proc.
//
// On Linux the watcher holds a pidfd per process (pidfd_open, kernel 5.3):
// it refers to that process instance, never to a later one with the same
// PID, and polls readable once the process exits, so one poll(2) over all
// of them is an exact PID-reuse check. It is used only when <hostRoot>/proc
// is the agent's own PID namespace's /proc (its proc/self is the agent):
// a fake tree (the simulator, tests) or another namespace's /proc names
// PIDs that pidfd_open would resolve to unrelated processes. Elsewhere, and
// for each process pidfd_open refuses (EPERM under a seccomp profile, a
// process already gone), the start-time check stays.

import (
	"context"
	"log/slog"
)

// ProcessWatcher follows the processes the attributor resolved. The
// simulator or a test may stand in for the kernel's (WithProcessWatcher).
type ProcessWatcher interface {
	// Watch begins following pid and returns a handle for it. It is
	// called before the process's facts are read from /proc, so that a
	// handle never follows a later process that reused the PID. An error
	// means it cannot be followed (gone, not permitted, not supported):
	// that PID is then checked by its start time at every poll.
	Watch(pid uint32) (handle int, err error)
	// Exited sets exited[i] for each handles[i] whose process has exited
	// since it was watched: one call per poll for all of them. On an
	// error the attributor checks every process by its start time this
	// poll.
	Exited(handles []int, exited []bool) error
	// Release forgets a handle.
	Release(handle int)
}

// WithProcessWatcher sets the watcher (nil: none, every poll checks start
// times). The default is the kernel's pidfds when the host root's /proc is
// the agent's own, else none.
func WithProcessWatcher(w ProcessWatcher) Option {
	return func(a *Attributor) { a.watcher, a.watcherSet = w, true }
}

// watchState is the watcher's scratch, kept between polls so that a poll
// allocates nothing.
type watchState struct {
	pids    []uint32
	handles []int
	exited  []bool
	// failed logs a failing Exited once until it works again.
	failed bool
}

// defaultWatcher picks the watcher New uses without WithProcessWatcher.
func (a *Attributor) defaultWatcher(hostRoot string) {
	if a.watcherSet {
		return
	}
	if w := newPidfdWatcher(hostRoot); w != nil {
		a.watcher = w
		w.releaseWhenUnreachable(a)
	}
}

// checkWatched asks the watcher once which watched processes exited; it
// forgets those, and marks the others confirmed for this poll (resolve
// then skips /proc for them). Called with a.mu held, after a.gen++.
func (a *Attributor) checkWatched(ctx context.Context) {
	if a.watcher == nil {
		return
	}
	ws := &a.watch
	ws.pids, ws.handles = ws.pids[:0], ws.handles[:0]
	for pid, e := range a.cache {
		if e.watched {
			ws.pids = append(ws.pids, pid)
			ws.handles = append(ws.handles, e.handle)
		}
	}
	if len(ws.pids) == 0 {
		return
	}
	ws.exited = append(ws.exited[:0], make([]bool, len(ws.pids))...)
	if err := a.watcher.Exited(ws.handles, ws.exited); err != nil {
		if !ws.failed {
			ws.failed = true
			a.log.WarnContext(ctx, "process watcher failed; checking processes by their start time in /proc", "err", err)
		}
		return
	}
	ws.failed = false
	for i, pid := range ws.pids {
		if ws.exited[i] {
			a.forget(pid)
			continue
		}
		e := a.cache[pid]
		e.live = a.gen
		a.cache[pid] = e
	}
}

// watchNew starts watching pid before its facts are read; ok false: it is
// not watched (no watcher, or the watcher cannot follow it).
func (a *Attributor) watchNew(ctx context.Context, pid uint32) (handle int, ok bool) {
	if a.watcher == nil {
		return 0, false
	}
	h, err := a.watcher.Watch(pid)
	if err != nil {
		a.log.DebugContext(ctx, "process not watched; checking it by its start time", slog.Uint64("pid", uint64(pid)), slog.Any("err", err))
		return 0, false
	}
	return h, true
}

// stillThere reports whether the watched process is alive after its facts
// were read: if it exited meanwhile, the facts may be a later process's
// that reused the PID, and the entry must not be kept.
func (a *Attributor) stillThere(handle int) bool {
	one := [1]bool{}
	return a.watcher.Exited([]int{handle}, one[:]) == nil && !one[0]
}

// unwatch releases a handle watchNew returned, if it did.
func (a *Attributor) unwatch(handle int, watched bool) {
	if watched {
		a.watcher.Release(handle)
	}
}

// forget drops pid from the cache, releasing its watch.
func (a *Attributor) forget(pid uint32) {
	if e, ok := a.cache[pid]; ok && e.watched {
		a.watcher.Release(e.handle)
	}
	delete(a.cache, pid)
}

// Close releases what the attributor holds open (the watcher's handles).
func (a *Attributor) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for pid := range a.cache {
		a.forget(pid)
	}
	return nil
}
