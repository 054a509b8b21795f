package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's starttime (100 on
// every Linux architecture gopsutil supports).
const clockTicks = 100

// bootBefore is how long before the scenario start the simulated host
// booted: its processes then have plausible, positive start times.
const bootBefore = time.Hour

// hostRoot writes the simulated host's files under root: proc/stat,
// etc/passwd and proc/<pid>/{stat,status,cgroup} of running processes.
type hostRoot struct {
	root  string
	proc  string
	btime int64 // boot time, Unix seconds
	buf   []byte
}

// newHostRoot prepares root, which must be missing or empty: the driver
// adds and removes proc/<pid> directories there and must never mistake a
// real host's files for its own.
func newHostRoot(root string, s *Scenario) (*hostRoot, error) {
	entries, err := os.ReadDir(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read simulated host root %s: %w", root, err)
	case len(entries) > 0:
		return nil, fmt.Errorf("simulated host root %s: must be empty or missing, has %s", root, entries[0].Name())
	}
	h := &hostRoot{root: root, proc: filepath.Join(root, "proc"),
		btime: s.Start.Add(-bootBefore).Unix()}
	for _, dir := range []string{h.proc, filepath.Join(root, "etc")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create simulated host root: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(h.proc, "stat"), procStat(h.btime), 0o644); err != nil {
		return nil, fmt.Errorf("write simulated host root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), passwd(s), 0o644); err != nil {
		return nil, fmt.Errorf("write simulated host root: %w", err)
	}
	return h, nil
}

// procStat is a minimal /proc/stat; readers want its btime line.
func procStat(btime int64) []byte {
	return fmt.Appendf(nil, "cpu  79242713 1721 4120337 1528911004 301442 0 90211 0 0 0\n"+
		"cpu0 79242713 1721 4120337 1528911004 301442 0 90211 0 0 0\n"+
		"intr 1123453412 0 0 0\nctxt 2089345123\nbtime %d\nprocesses 4893211\n"+
		"procs_running 3\nprocs_blocked 0\n", btime)
}

// passwd lists the system users and every tenant's user, by uid.
func passwd(s *Scenario) []byte {
	type entry struct {
		name string
		uid  int
	}
	users := []entry{{"root", 0}, {"daemon", 1}, {"nobody", 65534}}
	seen := map[string]bool{"root": true, "daemon": true, "nobody": true}
	for _, t := range s.Tenants {
		if t.User != "" && !seen[t.User] {
			seen[t.User] = true
			users = append(users, entry{t.User, t.UID})
		}
	}
	sort.Slice(users, func(a, b int) bool { return users[a].uid < users[b].uid })
	var b strings.Builder
	for _, u := range users {
		home, shell := "/home/"+u.name, "/bin/bash"
		if u.uid < 1000 || u.uid == 65534 {
			home, shell = "/nonexistent", "/usr/sbin/nologin"
			if u.uid == 0 {
				home, shell = "/root", "/bin/bash"
			}
		}
		fmt.Fprintf(&b, "%s:x:%d:%d:%s:%s:%s\n", u.name, u.uid, u.uid, u.name, home, shell)
	}
	return []byte(b.String())
}

// startProcess writes proc/<pid>/{stat,status,cgroup}; started is the
// process's virtual start instant.
func (h *hostRoot) startProcess(pid uint32, uid int, cgroup string, started time.Time) error {
	dir := filepath.Join(h.proc, strconv.FormatUint(uint64(pid), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("start simulated process %d: %w", pid, err)
	}
	ticks := (started.UnixMilli() - h.btime*1000) / (1000 / clockTicks)
	// Fields after comm, from 3 (state); 22 is starttime. Values are those
	// of an idle Python process; only pid, ppid and starttime matter.
	h.buf = fmt.Appendf(h.buf[:0], "%d (python3) S 1 %d %d 0 -1 4194560 1288811 0 12 0 861234 90211 0 0 20 0 64 0 %d "+
		"41111896064 1197809 18446744073709551615 94649390235648 94649393269473 140727426478096 0 0 0 0 "+
		"16781312 134235650 0 0 0 17 12 0 0 0 0 0 94649393935696 94649394216552 94649404907520 "+
		"140727426484631 140727426484703 140727426484703 140727426486239 0\n", pid, pid, pid, ticks)
	if err := os.WriteFile(filepath.Join(dir, "stat"), h.buf, 0o644); err != nil {
		return fmt.Errorf("start simulated process %d: %w", pid, err)
	}
	h.buf = fmt.Appendf(h.buf[:0], "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nNgid:\t0\n"+
		"Pid:\t%d\nPPid:\t1\nTracerPid:\t0\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\n"+
		"FDSize:\t256\nGroups:\t%d\nThreads:\t64\n", pid, pid, uid, uid, uid, uid, uid, uid, uid, uid, uid)
	if err := os.WriteFile(filepath.Join(dir, "status"), h.buf, 0o644); err != nil {
		return fmt.Errorf("start simulated process %d: %w", pid, err)
	}
	h.buf = fmt.Appendf(h.buf[:0], "0::%s\n", cgroup)
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), h.buf, 0o644); err != nil {
		return fmt.Errorf("start simulated process %d: %w", pid, err)
	}
	return nil
}

// endProcess removes proc/<pid>.
func (h *hostRoot) endProcess(pid uint32) error {
	if err := os.RemoveAll(filepath.Join(h.proc, strconv.FormatUint(uint64(pid), 10))); err != nil {
		return fmt.Errorf("end simulated process %d: %w", pid, err)
	}
	return nil
}
