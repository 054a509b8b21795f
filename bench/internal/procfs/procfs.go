// Package procfs reads what the bench measures of processes and of the
// machine from Linux's /proc (proc(5)). It only reads.
package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUTicks is utime+stime of pid, in clock ticks (proc(5): fields 14 and
// 15 of /proc/<pid>/stat; the command name in field 2 may hold spaces, so
// fields are counted after its closing parenthesis).
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d (did it exit?): %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return u + k, nil
}

// CPUTime is the time pid's threads have run on a CPU, to the nanosecond:
// the sum of the first field of /proc/<pid>/task/*/schedstat. utime and
// stime in /proc/<pid>/stat count whole clock ticks (10 ms), too coarse for
// a daemon that runs a few milliseconds a second. A thread that has exited
// is no longer counted; Go's threads seldom exit.
func CPUTime(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read threads of pid %d (did it exit?): %w", pid, err)
	}
	var sum time.Duration
	read := 0
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread ended since the listing
		}
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, fmt.Errorf("%s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %q", dir, t.Name(), f[0])
		}
		sum += time.Duration(ns)
		read++
	}
	if read == 0 {
		return 0, fmt.Errorf("pid %d: no thread's schedstat could be read", pid)
	}
	return sum, nil
}

// RSSBytes is VmRSS of pid.
func RSSBytes(pid int) (int64, error) { return StatusBytes(pid, "VmRSS") }

// StatusBytes is a memory field of /proc/<pid>/status, given in kB there
// (VmRSS, RssAnon, RssFile, ...), in bytes.
func StatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d (did it exit?): %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: %s %q", pid, field, v)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %s %q", pid, field, v)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// Machine is the aggregate CPU time of the machine, in clock ticks
// (the "cpu" line of /proc/stat).
type Machine struct {
	Busy, Idle, IOWait int64
}

// ReadMachine reads the "cpu" line of /proc/stat: busy is user, nice,
// system, irq, softirq and steal.
func ReadMachine() (Machine, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Machine{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return Machine{}, fmt.Errorf("/proc/stat: first line %q, want the cpu totals", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return Machine{}, fmt.Errorf("/proc/stat: cpu field %d %q", i+1, f[i+1])
		}
	}
	// user nice system idle iowait irq softirq steal
	return Machine{Busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7], Idle: v[3], IOWait: v[4]}, nil
}

// Sub is m - o.
func (m Machine) Sub(o Machine) Machine {
	return Machine{Busy: m.Busy - o.Busy, Idle: m.Idle - o.Idle, IOWait: m.IOWait - o.IOWait}
}

// Percent is part's share of all of m's ticks, in percent.
func (m Machine) Percent(part int64) float64 {
	all := m.Busy + m.Idle + m.IOWait
	if all == 0 {
		return 0
	}
	return 100 * float64(part) / float64(all)
}
