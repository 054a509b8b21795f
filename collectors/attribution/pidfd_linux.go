package attribution

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// pidfdWatcher is the kernel's ProcessWatcher: a pidfd per process, polled
// all at once (watch.go).
type pidfdWatcher struct {
	fds []unix.PollFd // scratch for Exited
	// open is pidfd_open; a benchmark stands in for it to follow fake PIDs
	// with real pidfds.
	open func(pid uint32) (int, error)
	// held are the open pidfds, closed by closeAll when the attributor
	// that owns the watcher is garbage (a reloaded configuration builds
	// a new one) without Close.
	mu   sync.Mutex
	held map[int]struct{}
}

func pidfdOpen(pid uint32) (int, error) {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return fd, nil
}

// newPidfdWatcher is the pidfd watcher if hostRoot's /proc is the agent's
// own PID namespace's and the kernel has pidfd_open; else nil.
func newPidfdWatcher(hostRoot string) *pidfdWatcher {
	if !ownProc(hostRoot) {
		return nil
	}
	fd, err := pidfdOpen(uint32(os.Getpid()))
	if err != nil {
		return nil // kernel before 5.3, or seccomp refuses it
	}
	_ = unix.Close(fd)
	return &pidfdWatcher{open: pidfdOpen, held: map[int]struct{}{}}
}

// PidfdStandIn is the kernel's ProcessWatcher for a benchmark over a fake
// /proc: its PIDs name no real process, so every PID it is asked to watch
// is followed by a pidfd of the live process pid (the benchmark's own).
// The attributor's exit check is then the kernel's poll over real pidfds,
// as on a node. nil where pidfd_open is not available. The caller releases
// the pidfds with the attributor's Close.
func PidfdStandIn(pid uint32) ProcessWatcher {
	fd, err := pidfdOpen(pid)
	if err != nil {
		return nil
	}
	_ = unix.Close(fd)
	return &pidfdWatcher{open: func(uint32) (int, error) { return pidfdOpen(pid) }, held: map[int]struct{}{}}
}

// ownProc reports whether <hostRoot>/proc/self is this process: a fake
// tree has no proc/self, and another PID namespace's /proc names the agent
// by another PID (or not at all).
func ownProc(hostRoot string) bool {
	self, err := os.Readlink(filepath.Join(hostRoot, "proc", "self"))
	return err == nil && self == strconv.Itoa(os.Getpid())
}

func (w *pidfdWatcher) Watch(pid uint32) (int, error) {
	fd, err := w.open(pid)
	if err != nil {
		return -1, err
	}
	w.mu.Lock()
	w.held[fd] = struct{}{}
	w.mu.Unlock()
	return fd, nil
}

func (w *pidfdWatcher) Release(fd int) {
	w.mu.Lock()
	delete(w.held, fd)
	w.mu.Unlock()
	_ = unix.Close(fd)
}

// closeAll closes every pidfd still held.
func (w *pidfdWatcher) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for fd := range w.held {
		_ = unix.Close(fd)
	}
	clear(w.held)
}

// releaseWhenUnreachable closes w's pidfds once owner is garbage.
func (w *pidfdWatcher) releaseWhenUnreachable(owner *Attributor) {
	runtime.AddCleanup(owner, func(w *pidfdWatcher) { w.closeAll() }, w)
}

// Exited polls every pidfd once without waiting: a pidfd is readable once
// its process has exited.
func (w *pidfdWatcher) Exited(fds []int, exited []bool) error {
	if len(exited) < len(fds) {
		return fmt.Errorf("poll pidfds: %d results for %d pidfds", len(exited), len(fds))
	}
	exited = exited[:len(fds)]
	w.fds = w.fds[:0]
	for _, fd := range fds {
		w.fds = append(w.fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	for {
		_, err := unix.Poll(w.fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll %d pidfds: %w", len(fds), err)
		}
		break
	}
	for i := range exited {
		// POLLIN: exited; POLLHUP/POLLERR/POLLNVAL: not a live pidfd
		// any more (treated as exited: the process is read afresh).
		exited[i] = w.fds[i].Revents != 0
	}
	return nil
}
