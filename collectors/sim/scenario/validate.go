package scenario

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/collectors/sim"
	"github.com/gpumeter/gpumeter/protocol"
)

// TotalSlices is the number of compute slices of the GPUs the simulator
// models (A100, H100): a MIG profile "Ng.…" takes N of them.
const TotalSlices = 7

// maxPID is Linux's largest pid_max (4 Mi).
const maxPID = 1 << 22

var (
	migProfile = regexp.MustCompile(`^([1-7])g\.[0-9]+gb(?:\+me)?$`)
	tenantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	userName   = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	// placeholder matches {name} in a cgroup template.
	placeholder = regexp.MustCompile(`\{([^{}]*)\}`)
)

// placeholders a tenant's cgroup template may use.
var placeholders = map[string]bool{
	"tenant": true, "user": true, "uid": true, "job": true, "run": true,
	"pid": true, "container": true, "pod_uid": true, "pod_uid_systemd": true,
}

// fail builds an *Error at the line of the first key present.
func (s *Scenario) fail(keys []string, format string, args ...any) error {
	return &Error{Path: s.Path, Line: s.line(keys...), Err: fmt.Errorf(format, args...)}
}

// validate checks everything the decoder cannot: ranges, references
// between sections and the order of times.
func (s *Scenario) validate() error {
	if s.Start.IsZero() {
		return s.fail(nil, "start: required (the virtual start, e.g. 2026-11-23T00:00:00Z)")
	}
	s.Start = s.Start.UTC()
	if err := s.checkTime([]string{"start"}, "start", s.Start.Sub(s.Start.Truncate(time.Millisecond))); err != nil {
		return err
	}
	if s.Duration <= 0 {
		return s.fail([]string{"duration"}, "duration: must be positive, got %v", s.Duration)
	}
	if err := s.checkTime([]string{"duration"}, "duration", s.Duration); err != nil {
		return err
	}
	if s.PollInterval <= 0 || s.PollInterval > s.Duration || s.PollInterval%time.Millisecond != 0 {
		return s.fail([]string{"poll_interval"},
			"poll_interval: want whole milliseconds in (0, duration], got %v", s.PollInterval)
	}
	if len(s.GPUs) == 0 {
		return s.fail([]string{"gpus"}, "gpus: at least one GPU is required")
	}
	for i := range s.GPUs {
		if err := s.validateGPU(i); err != nil {
			return err
		}
	}
	if err := s.validateReconfigure(); err != nil {
		return err
	}
	if len(s.Tenants) == 0 {
		return s.fail([]string{"tenants"}, "tenants: at least one tenant is required")
	}
	if err := s.validateTenants(); err != nil {
		return err
	}
	for i := range s.Jobs {
		if err := s.validateJob(i); err != nil {
			return err
		}
	}
	if err := s.validateFaults(); err != nil {
		return err
	}
	if err := s.validatePods(); err != nil {
		return err
	}
	if err := s.validateSlurmJobs(); err != nil {
		return err
	}
	return s.reconfigureWhileLost()
}

// checkTime refuses sub-millisecond times: all accounting is in whole ms.
func (s *Scenario) checkTime(keys []string, what string, d time.Duration) error {
	if d%time.Millisecond != 0 {
		return s.fail(keys, "%s: %v is not a whole number of milliseconds", what, d)
	}
	return nil
}

func (s *Scenario) validateGPU(i int) error {
	g := &s.GPUs[i]
	key := "gpus." + strconv.Itoa(i)
	at := func(f string) []string { return []string{key + "." + f, key} }
	if strings.TrimSpace(g.Model) == "" {
		g.Model = sim.DefaultModel
	}
	if _, err := sim.Profiles(g.Model); err != nil {
		return s.fail(at("model"), "gpu %d: model: %q is not simulated (want one of %s)",
			i, g.Model, strings.Join(sim.Models(), ", "))
	}
	maxW, err := sim.MaxPowerWatts(g.Model)
	if err != nil {
		return s.fail(at("model"), "gpu %d: model: %v", i, err)
	}
	g.maxPower = maxW
	if g.UUID != "" {
		// The collector reports canonical UUIDs; one without a canonical
		// form would leave the GPU out of the simulation.
		if _, err := protocol.CanonicalGPUUUID(g.UUID); err != nil {
			return s.fail(at("uuid"), "gpu %d: uuid: %v", i, err)
		}
	}
	return s.checkLayout(fmt.Sprintf("gpu %d", i), key, g.Model, g.MIG)
}

// checkLayout checks a MIG layout for a model as the simulator applies it;
// what starts the messages ("gpu 0", "reconfigure 2") and key is the YAML
// key holding the mig list.
func (s *Scenario) checkLayout(what, key, model string, layout []string) error {
	profiles, err := sim.Profiles(model)
	if err != nil {
		return s.fail([]string{key}, "%s: %v", what, err)
	}
	used := 0
	for m, p := range layout {
		n, ok := profileSlices(p)
		if !ok || !slices.Contains(profiles, p) {
			return s.fail([]string{key + ".mig." + strconv.Itoa(m), key + ".mig"},
				"%s: mig %d: %q is not a MIG profile of %s (want one of %s)",
				what, m, p, model, strings.Join(profiles, ", "))
		}
		used += n
	}
	if used > TotalSlices {
		return s.fail([]string{key + ".mig", key}, "%s: mig: the profiles take %d slices, a GPU has %d", what, used, TotalSlices)
	}
	// Instance counts per profile, as SetMIG checks them.
	if err := sim.CheckLayout(model, layout); err != nil {
		return s.fail([]string{key + ".mig", key}, "%s: mig: %v", what, err)
	}
	return nil
}

// profileSlices is the compute slice count of a MIG profile name.
func profileSlices(p string) (int, bool) {
	m := migProfile.FindStringSubmatch(p)
	if m == nil {
		return 0, false
	}
	return int(m[1][0] - '0'), true
}

func (s *Scenario) validateTenants() error {
	names := make([]string, 0, len(s.Tenants))
	for n := range s.Tenants {
		names = append(names, n)
	}
	sort.Strings(names)
	users := map[string]string{} // user → tenant
	uids := map[int]string{}     // uid of a named user → tenant
	for _, n := range names {
		t := s.Tenants[n]
		key := "tenants." + n
		at := func(f string) []string { return []string{key + "." + f, key} }
		if !tenantName.MatchString(n) {
			return s.fail([]string{key}, "tenant %q: names are letters, digits, '.', '_' and '-'", n)
		}
		if t.UID < 0 || t.UID > 1<<32-2 {
			return s.fail(at("uid"), "tenant %s: uid: %d out of range", n, t.UID)
		}
		if t.User != "" {
			if !userName.MatchString(t.User) {
				return s.fail(at("user"), "tenant %s: user: %q is not a Unix user name", n, t.User)
			}
			if _, ok := s.lines[key+".uid"]; !ok {
				return s.fail(at("user"), "tenant %s: user %s needs a uid (for etc/passwd)", n, t.User)
			}
			if other, ok := users[t.User]; ok && s.Tenants[other].UID != t.UID {
				return s.fail(at("user"), "tenant %s: user %s has uid %d in tenant %s", n, t.User, s.Tenants[other].UID, other)
			}
			if other, ok := uids[t.UID]; ok && s.Tenants[other].User != t.User {
				return s.fail(at("uid"), "tenant %s: uid %d is user %s in tenant %s", n, t.UID, s.Tenants[other].User, other)
			}
			users[t.User], uids[t.UID] = n, n
		}
		if t.Cgroup != "" && !strings.HasPrefix(t.Cgroup, "/") {
			return s.fail(at("cgroup"), "tenant %s: cgroup: %q must start with /", n, t.Cgroup)
		}
		if strings.ContainsAny(t.Cgroup, "\n") {
			return s.fail(at("cgroup"), "tenant %s: cgroup: must be one line", n)
		}
		for _, m := range placeholder.FindAllStringSubmatch(t.Cgroup, -1) {
			if !placeholders[m[1]] {
				return s.fail(at("cgroup"), "tenant %s: cgroup: unknown placeholder {%s} (want tenant, user, uid, job, run, pid, container, pod_uid, pod_uid_systemd)", n, m[1])
			}
			if strings.HasPrefix(m[1], "pod_uid") && t.PodUID == "" {
				return s.fail(at("cgroup"), "tenant %s: cgroup: {%s} needs pod_uid", n, m[1])
			}
			if m[1] == "user" && t.User == "" {
				return s.fail(at("cgroup"), "tenant %s: cgroup: {user} needs user", n)
			}
		}
	}
	return nil
}

func (s *Scenario) validateJob(i int) error {
	j := &s.Jobs[i]
	key := "jobs." + strconv.Itoa(i)
	fail := s.entryFail(key, "job", i)
	if _, ok := s.Tenants[j.Tenant]; !ok {
		if j.Tenant == "" {
			return fail("tenant", "tenant: required")
		}
		return fail("tenant", "unknown tenant %q", j.Tenant)
	}
	if j.GPU < 0 || j.GPU >= len(s.GPUs) {
		return fail("gpu", "gpu %d out of range (the scenario has %d)", j.GPU, len(s.GPUs))
	}
	// The layout in force at the job's start; below, the job must end by
	// the next reconfiguration.
	spans := s.layoutsOf(j.GPU)
	k := 0
	for k+1 < len(spans) && spans[k+1].from <= j.Start {
		k++
	}
	j.layout = k
	layout := spans[k].mig
	when := ""
	if k > 0 {
		when = fmt.Sprintf(" from %v (line %d)", spans[k].from, spans[k].line)
	}
	switch {
	case len(layout) > 0 && j.MIG == nil:
		return fail("gpu", "gpu %d is in MIG mode%s: name the instance with mig (0-%d)", j.GPU, when, len(layout)-1)
	case len(layout) == 0 && j.MIG != nil:
		return fail("mig", "gpu %d is not in MIG mode%s", j.GPU, when)
	case j.MIG != nil && (*j.MIG < 0 || *j.MIG >= len(layout)):
		return fail("mig", "mig %d out of range (gpu %d has %d instances%s)", *j.MIG, j.GPU, len(layout), when)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"start", j.Start}, {"end", j.End}, {"restart_every", j.RestartEvery}} {
		if f.d < 0 {
			return fail(f.name, "%s: %v is negative", f.name, f.d)
		}
		if f.d%time.Millisecond != 0 {
			return fail(f.name, "%s: %v is not a whole number of milliseconds", f.name, f.d)
		}
	}
	if j.End <= j.Start {
		return fail("end", "end %v is not after start %v", j.End, j.Start)
	}
	if j.End > s.Duration {
		return fail("end", "end %v is after the scenario's duration %v", j.End, s.Duration)
	}
	if k+1 < len(spans) && spans[k+1].from < j.End {
		return fail("end", "end %v is after gpu %d's reconfiguration at %v (line %d): the driver refuses to reconfigure a busy GPU, so a job ends by then",
			j.End, j.GPU, spans[k+1].from, spans[k+1].line)
	}
	if j.Processes < 1 {
		return fail("processes", "processes: want at least 1, got %d", j.Processes)
	}
	if j.Utilization < 0 || j.Utilization > 100 {
		return fail("utilization", "utilization: want 0-100, got %d", j.Utilization)
	}
	if j.RestartEvery > 0 && j.RestartEvery < time.Second {
		// gopsutil resolves start times to whole seconds: a PID reused
		// sooner could not be told apart, and no real job churns that fast.
		return fail("restart_every", "restart_every: want at least 1s, got %v", j.RestartEvery)
	}
	if j.ReusePIDs && j.RestartEvery == 0 {
		return fail("reuse_pids", "reuse_pids needs restart_every")
	}
	if j.PID != 0 && (j.PID < 2 || uint64(j.PID)+uint64(j.Processes) > maxPID) {
		return fail("pid", "pid: %d out of range 2-%d", j.PID, maxPID)
	}
	if j.JobID < 0 {
		return fail("job_id", "job_id: want a positive number, got %d", j.JobID)
	}
	if maxW := s.GPUs[j.GPU].maxPower; j.PowerWatts < 0 || j.PowerWatts > maxW {
		return fail("power_watts", "power_watts: want 0-%d (the power limit of the GPU's model), got %d", maxW, j.PowerWatts)
	}
	if j.MemoryMiB < 0 {
		return fail("memory_mib", "memory_mib: want a non-negative number, got %d", j.MemoryMiB)
	}
	return nil
}

// entryFail is how the i'th entry of a list, at key, reports an error: at
// its field (or the entry's own line), after the entry's noun and number.
func (s *Scenario) entryFail(key, noun string, i int) func(field, format string, args ...any) error {
	return func(field, format string, args ...any) error {
		return s.fail([]string{key + "." + field, key}, noun+" %d: "+format, append([]any{i + 1}, args...)...)
	}
}

func (s *Scenario) validateFaults() error {
	lastBack := map[int]time.Duration{} // gpu → back_at of its previous fault
	lastLine := map[int]int{}
	for i := range s.Faults {
		f := &s.Faults[i]
		key := "faults." + strconv.Itoa(i)
		fail := s.entryFail(key, "fault", i)
		if f.GPU < 0 || f.GPU >= len(s.GPUs) {
			return fail("gpu", "gpu %d out of range (the scenario has %d)", f.GPU, len(s.GPUs))
		}
		for _, t := range []struct {
			name string
			d    time.Duration
		}{{"lost_at", f.LostAt}, {"back_at", f.BackAt}} {
			if t.d < 0 || t.d > s.Duration {
				return fail(t.name, "%s: %v is outside the scenario (0 to %v)", t.name, t.d, s.Duration)
			}
			if t.d%time.Millisecond != 0 {
				return fail(t.name, "%s: %v is not a whole number of milliseconds", t.name, t.d)
			}
		}
		if f.BackAt <= f.LostAt {
			return fail("back_at", "back_at %v is not after lost_at %v", f.BackAt, f.LostAt)
		}
		if prev, ok := lastBack[f.GPU]; ok && f.LostAt < prev {
			return fail("lost_at", "lost_at %v is before the end (%v) of gpu %d's previous fault (line %d): list a GPU's faults in order, without overlap",
				f.LostAt, prev, f.GPU, lastLine[f.GPU])
		}
		lastBack[f.GPU], lastLine[f.GPU] = f.BackAt, s.line(key)
	}
	return nil
}

// errPIDClash is two processes holding one PID at the same time.
var errPIDClash = errors.New("pid in use")
