package scenario

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// firstAutoPID is where allocated PIDs start: above what a freshly booted
// host's daemons hold, so fixtures look like a real node.
const firstAutoPID = 20000

// procSpec is one process of one run of a job: the unit of the driver's
// fake /proc and of the machine's process lists.
type procSpec struct {
	job   int // index in Scenario.Jobs
	run   int // 0 for the job's first run, +1 per restart
	idx   int // 0 … Processes-1
	pid   uint32
	start time.Duration // [start, end) offsets from Scenario.Start
	end   time.Duration
}

// expand lists every process instance of every job and gives each a PID:
// pinned (Job.PID), reused across restarts (Job.ReusePIDs), or allocated
// in order of start time from firstAutoPID upwards, skipping pinned ones,
// so the same file always yields the same PIDs. Two processes holding one
// PID at the same time is an error.
func (s *Scenario) expand() error {
	var ps []procSpec
	for ji := range s.Jobs {
		j := &s.Jobs[ji]
		for run, t := 0, j.Start; t < j.End; run++ {
			next := j.End
			if j.RestartEvery > 0 && t+j.RestartEvery < j.End {
				next = t + j.RestartEvery
			}
			for k := 0; k < j.Processes; k++ {
				ps = append(ps, procSpec{job: ji, run: run, idx: k, start: t, end: next})
			}
			t = next
		}
	}
	sort.SliceStable(ps, func(a, b int) bool { return ps[a].start < ps[b].start })

	pinned := map[uint32]bool{}
	for ji := range s.Jobs {
		if j := &s.Jobs[ji]; j.PID != 0 {
			for k := 0; k < j.Processes; k++ {
				pinned[j.PID+uint32(k)] = true
			}
		}
	}
	next := uint32(firstAutoPID)
	first := map[[2]int]uint32{} // (job, idx) → PID of run 0
	for i := range ps {
		p := &ps[i]
		j := &s.Jobs[p.job]
		switch {
		case j.PID != 0 && (p.run == 0 || j.ReusePIDs):
			p.pid = j.PID + uint32(p.idx)
		case p.run > 0 && j.ReusePIDs:
			p.pid = first[[2]int{p.job, p.idx}]
		default:
			for pinned[next] {
				next++
			}
			p.pid = next
			next++
		}
		if p.run == 0 {
			first[[2]int{p.job, p.idx}] = p.pid
		}
	}

	// No PID may be held by two processes at once.
	byPID := map[uint32][]int{}
	for i := range ps {
		byPID[ps[i].pid] = append(byPID[ps[i].pid], i)
	}
	for _, idx := range byPID {
		for a := 1; a < len(idx); a++ {
			p, q := &ps[idx[a-1]], &ps[idx[a]] // sorted by start
			if q.start < p.end {
				key := "jobs." + strconv.Itoa(q.job)
				return &Error{Path: s.Path, Line: s.line(key+".pid", key), Err: fmt.Errorf(
					"job %d: pid %d at %v is still held by job %d's process (line %d) until %v: %w",
					q.job+1, q.pid, q.start, p.job+1, s.line("jobs."+strconv.Itoa(p.job)), p.end, errPIDClash)}
			}
		}
	}
	s.procs = ps
	return nil
}

// cgroupPath fills the tenant's cgroup template for one process.
func (s *Scenario) cgroupPath(p *procSpec) string {
	j := &s.Jobs[p.job]
	t := s.Tenants[j.Tenant]
	tmpl := t.Cgroup
	if tmpl == "" {
		tmpl = defaultCgroup
	}
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	return placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		switch m[1 : len(m)-1] {
		case "tenant":
			return j.Tenant
		case "user":
			return t.User
		case "uid":
			return strconv.Itoa(t.UID)
		case "job":
			return strconv.Itoa(j.JobID)
		case "run":
			return strconv.Itoa(p.run)
		case "pid":
			return strconv.FormatUint(uint64(p.pid), 10)
		case "container":
			return containerID(s.Name, p)
		case "pod_uid":
			return t.PodUID
		case "pod_uid_systemd":
			return strings.ReplaceAll(t.PodUID, "-", "_")
		}
		return m // validated away
	})
}

// containerID is a deterministic 64-hex container id per (job, run): the
// processes of one run share a container, a restart gets a new one.
func containerID(scenario string, p *procSpec) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/job%d/run%d", scenario, p.job, p.run)))
	return hex.EncodeToString(sum[:])
}
