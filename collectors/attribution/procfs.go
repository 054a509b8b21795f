package attribution

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/common"
	"github.com/shirou/gopsutil/v3/process"
)

// hostProc reads process facts from <hostRoot>/proc: the cgroup file
// directly, start time and uids through gopsutil pointed at the same
// directory by the context (common.EnvKey), never at the agent's own /proc.
type hostProc struct {
	dir string // <hostRoot>/proc
	env common.EnvMap
}

func newHostProc(hostRoot string) hostProc {
	dir := filepath.Join(hostRoot, "proc")
	return hostProc{dir: dir, env: common.EnvMap{common.HostProcEnvKey: dir}}
}

// withEnv returns ctx carrying the gopsutil environment; done once per
// Attribute call, not per process.
func (h hostProc) withEnv(ctx context.Context) context.Context {
	return context.WithValue(ctx, common.EnvKey, h.env)
}

// startTime is the process's start time in clock ticks since boot: field
// 22 of /proc/<pid>/stat, the kernel's own identity of a process instance.
// It is used only as the identity half of the cache key (pid, start).
//
// It is read directly rather than through gopsutil's CreateTime, which on
// every call also reads /proc/stat and /proc/uptime and makes a
// getpriority syscall: that was 87% of the CPU of a simulated DGX day,
// because this runs for every GPU process on every poll.
func (h hostProc) startTime(_ context.Context, pid uint32) (int64, error) {
	path := filepath.Join(h.dir, strconv.FormatUint(uint64(pid), 10), "stat")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	// A stat line is about 300 bytes; the command name is at most 64.
	var buf [1024]byte
	n, err := io.ReadFull(f, buf[:])
	_ = f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	b := buf[:n]
	// The command name (field 2) is in parentheses and may hold spaces
	// and ')': the fixed fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read start time of pid %d: %s: no command name", pid, path)
	}
	fields := bytes.Fields(b[i+1:]) // fields[0] is field 3 (state)
	const startField = 22 - 3
	if len(fields) <= startField {
		return 0, fmt.Errorf("read start time of pid %d: %s: %d fields, want more than 22", pid, path, len(fields)+2)
	}
	ticks, err := strconv.ParseInt(string(fields[startField]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read start time of pid %d: %s: field 22: %w", pid, path, err)
	}
	return ticks, nil
}

// uid is the process's real uid (the user who started it, which setuid
// programs do not change).
func (h hostProc) uid(ctx context.Context, pid uint32) (uint32, error) {
	p := &process.Process{Pid: int32(pid)}
	uids, err := p.UidsWithContext(ctx)
	if err != nil {
		return 0, fmt.Errorf("read uids of pid %d from %s: %w", pid, h.dir, err)
	}
	if len(uids) == 0 {
		return 0, fmt.Errorf("read uids of pid %d from %s: no Uid line in status", pid, h.dir)
	}
	return uint32(uids[0]), nil
}

// cgroupPaths returns the path of every line of /proc/<pid>/cgroup, in file
// order: "0::/path" (v2) and "N:controllers:/path" (v1, hybrid).
func (h hostProc) cgroupPaths(pid uint32) ([]string, error) {
	name := filepath.Join(h.dir, strconv.FormatUint(uint64(pid), 10), "cgroup")
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read cgroups of pid %d: %w", pid, err)
	}
	var paths []string
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		// The path is everything after the second colon: it may hold colons.
		_, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		if _, path, ok := bytes.Cut(rest, []byte{':'}); ok && len(path) > 0 {
			paths = append(paths, string(path))
		}
	}
	return paths, nil
}

// gone reports whether err means the process no longer exists: it exited
// between the driver's report and our read of /proc.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist)
}

// passwd is <hostRoot>/etc/passwd, parsed once and parsed again only when
// its modification time or size changes.
type passwd struct {
	path    string
	mtime   time.Time
	size    int64
	loaded  bool
	byName  map[string]uint32
	byUID   map[uint32]string
	checked uint64 // the Attribute generation of the last freshness check
	lastErr string // the last error logged, so a broken file logs once
}

// refresh makes the tables current. It returns an error when the file
// cannot be read; the tables then keep their last good contents.
func (p *passwd) refresh() error {
	fi, err := os.Stat(p.path)
	if err != nil {
		return fmt.Errorf("stat %s: %w", p.path, err)
	}
	if p.loaded && fi.ModTime().Equal(p.mtime) && fi.Size() == p.size {
		return nil
	}
	f, err := os.Open(p.path)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.path, err)
	}
	defer func() { _ = f.Close() }()
	byName, byUID := map[string]uint32{}, map[uint32]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:uid:gid:gecos:home:shell; the first entry for a
		// name or uid wins, as getpwnam/getpwuid do.
		fields := strings.SplitN(sc.Text(), ":", 4)
		if len(fields) < 4 || fields[0] == "" || strings.HasPrefix(fields[0], "#") ||
			strings.HasPrefix(fields[0], "+") || strings.HasPrefix(fields[0], "-") {
			continue
		}
		uid, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue
		}
		if _, ok := byName[fields[0]]; !ok {
			byName[fields[0]] = uint32(uid)
		}
		if _, ok := byUID[uint32(uid)]; !ok {
			byUID[uint32(uid)] = fields[0]
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p.path, err)
	}
	p.byName, p.byUID = byName, byUID
	p.mtime, p.size, p.loaded = fi.ModTime(), fi.Size(), true
	return nil
}
