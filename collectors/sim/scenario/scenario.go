package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/internal/yamlerr"
)

// Scenario is a loaded, validated scenario file. Times in jobs and faults
// are offsets from Start. Treat it as read-only once loaded: Expected and
// NewDriver read it, and the Driver keeps a reference.
type Scenario struct {
	// Path is the file it was loaded from ("" when built in Go).
	Path string `yaml:"-"`
	// Name defaults to the file's base name without extension.
	Name string `yaml:"name"`
	// Start is the virtual instant the scenario begins (UTC).
	Start time.Time `yaml:"start"`
	// Duration is how long the scenario runs; jobs and faults lie in
	// [0, Duration].
	Duration time.Duration `yaml:"duration"`
	// PollInterval is the sampling tick a simulation uses (default 1s); the
	// expected usage is exact for change points on its ticks.
	PollInterval time.Duration     `yaml:"poll_interval"`
	GPUs         []GPU             `yaml:"gpus"`
	Tenants      map[string]Tenant `yaml:"tenants"`
	Jobs         []Job             `yaml:"jobs"`
	Faults       []Fault           `yaml:"faults"`
	// Reconfigure changes GPUs' MIG layouts during the run.
	Reconfigure []Reconfig `yaml:"reconfigure"`
	// Pods and KubeletDown drive a simulated kubelet (pods.go).
	Pods        []Pod              `yaml:"pods"`
	KubeletDown []Outage           `yaml:"kubelet_down"`
	Attribution attribution.Config `yaml:"attribution"`

	// procs are the process instances of every job's runs, see expand.
	procs []procSpec
	// layouts are, per GPU, its MIG layouts in time order: that of gpus
	// from 0, then one per reconfiguration (validateReconfigure).
	layouts [][]layoutSpan
	// lines maps dotted keys ("jobs.2.end") to their line in the file.
	lines map[string]int
}

// GPU is one physical GPU: a sim.GPUSpec.
type GPU struct {
	// Model is passed to sim.GPUSpec.Model (e.g. H100-SXM5-80GB).
	Model string `yaml:"model"`
	// maxPower is the model's power limit in watts (set by validation).
	maxPower int
	// UUID is optional; the simulator derives a deterministic one otherwise.
	UUID string `yaml:"uuid"`
	// MIG lists MIG profiles (e.g. 3g.40gb) in layout order; empty: MIG off.
	MIG []string `yaml:"mig"`
}

// Tenant says how a tenant's processes look on the host. The map key in
// Scenario.Tenants is the tenant name the attribution rules are expected
// to produce for these processes ("unattributed" for processes no rule
// matches).
type Tenant struct {
	// User is the Unix user name written to etc/passwd (needs UID).
	User string `yaml:"user"`
	// UID is the processes' real uid (default 0, root, as in most
	// containers).
	UID int `yaml:"uid"`
	// Cgroup is the cgroup v2 path template written to proc/<pid>/cgroup
	// as "0::<path>". Placeholders: {tenant} {user} {uid} {job} {run} {pid}
	// {container} {pod_uid} {pod_uid_systemd}. Default:
	// /user.slice/user-{uid}.slice/session-{job}.scope (a login session).
	Cgroup string `yaml:"cgroup"`
	// PodUID is the Kubernetes pod UID (with dashes) for {pod_uid}, and
	// with underscores for {pod_uid_systemd} (the systemd cgroup driver's
	// spelling).
	PodUID string `yaml:"pod_uid"`
}

// Job is a tenant's work on one unit (a whole GPU or one MIG instance)
// from Start to End, as Processes concurrent processes.
type Job struct {
	Tenant string `yaml:"tenant"`
	// GPU is the index in Scenario.GPUs.
	GPU int `yaml:"gpu"`
	// MIG is the index in that GPU's MIG layout; required on a MIG GPU and
	// forbidden otherwise.
	MIG *int `yaml:"mig"`
	// Start and End are offsets from the scenario start; the job's
	// processes exist on [Start, End).
	Start time.Duration `yaml:"start"`
	End   time.Duration `yaml:"end"`
	// Processes is the number of concurrent processes (default 1).
	Processes int `yaml:"processes"`
	// Utilization is each process's SM utilization, 0-100 (default 100).
	Utilization int `yaml:"utilization"`
	// RestartEvery > 0 makes the processes exit and new ones start every
	// RestartEvery from Start (instantaneous: the tenant keeps the unit).
	RestartEvery time.Duration `yaml:"restart_every"`
	// ReusePIDs gives a restarted process the PID of the one it replaces
	// (with a new start time), to exercise PID-reuse detection.
	ReusePIDs bool `yaml:"reuse_pids"`
	// PID pins the PID of the job's first process (later ones get PID+1, …)
	// in its first run (in every run with ReusePIDs); 0: allocated.
	PID uint32 `yaml:"pid"`
	// JobID is {job} in the tenant's cgroup template (default: the job's
	// 1-based position in the file).
	JobID int `yaml:"job_id"`
	// PowerWatts is the board power while the job runs (default 70 W plus
	// Utilization's share of the rest up to the GPU model's power limit:
	// 70 + 630 × Utilization / 100 on an H100); at most that limit.
	PowerWatts int `yaml:"power_watts"`
	// MemoryMiB is each process's GPU memory (default 1024).
	MemoryMiB int `yaml:"memory_mib"`

	layout int // the index of its GPU's layout in force during the job
}

// Fault makes a GPU lost (GPU_IS_LOST on every NVML call) on [LostAt, BackAt).
type Fault struct {
	GPU    int           `yaml:"gpu"`
	LostAt time.Duration `yaml:"lost_at"`
	// BackAt defaults to the scenario's end (lost for good).
	BackAt time.Duration `yaml:"back_at"`
}

// Defaults.
const (
	DefaultPollInterval = time.Second
	DefaultUtilization  = 100
	DefaultMemoryMiB    = 1024
	IdlePowerWatts      = 70
	MaxPowerWatts       = 700 // the highest of the simulated models' limits (sim.MaxPowerWatts)
	defaultCgroup       = "/user.slice/user-{uid}.slice/session-{job}.scope"
)

// Unit names a metered unit by position: a whole GPU (MIG == -1) or one MIG
// instance of a GPU, in one of the GPU's MIG layouts. Driver.UnitUUID
// gives its UUID; Span, when it exists.
type Unit struct {
	GPU int
	MIG int
	// Layout is the index of the GPU's layout: 0 for that of gpus, k after
	// the GPU's k-th reconfiguration. The instances of two layouts are
	// different units even at the same index (new UUIDs).
	Layout int
}

func (u Unit) String() string {
	l := ""
	if u.Layout > 0 {
		l = fmt.Sprintf(" layout %d", u.Layout)
	}
	if u.MIG < 0 {
		return fmt.Sprintf("gpu %d%s", u.GPU, l)
	}
	return fmt.Sprintf("gpu %d%s mig %d", u.GPU, l, u.MIG)
}

// Unit is the unit the job runs on: in the layout of its GPU in force at
// its start (validation makes it the one in force throughout).
func (j *Job) Unit() Unit {
	if j.MIG == nil {
		return Unit{GPU: j.GPU, MIG: -1, Layout: j.layout}
	}
	return Unit{GPU: j.GPU, MIG: *j.MIG, Layout: j.layout}
}

// Units lists every metered unit in device order, each GPU's layouts in
// time order: a unit of a reconfigured layout exists only during its Span.
func (s *Scenario) Units() []Unit {
	var us []Unit
	for i := range s.GPUs {
		for k, l := range s.layoutsOf(i) {
			if len(l.mig) == 0 {
				us = append(us, Unit{GPU: i, MIG: -1, Layout: k})
				continue
			}
			for m := range l.mig {
				us = append(us, Unit{GPU: i, MIG: m, Layout: k})
			}
		}
	}
	return us
}

// End is the virtual instant the scenario ends.
func (s *Scenario) End() time.Time { return s.Start.Add(s.Duration) }

// Error is a scenario that cannot be used, with the file and line at fault.
type Error struct {
	Path string
	Line int // 0 when unknown
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads, decodes (strictly: unknown keys are errors) and validates a
// scenario file. Every error names the file and, where it has one, the line.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; path is used in errors.
func Parse(path string, data []byte) (*Scenario, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{Path: path, Err: errors.New("empty scenario")}
	}
	s := &Scenario{Path: path}
	if err := yamlerr.Decode(path, data, s); err != nil {
		var re *attribution.RuleError
		if errors.As(err, &re) {
			return nil, yamlError(path, re)
		}
		var errs []error
		for _, e := range yamlerr.List(err) {
			errs = append(errs, &Error{Path: path, Line: e.Line, Err: errors.New(e.Msg)})
		}
		if len(errs) == 1 {
			return nil, errs[0]
		}
		return nil, errors.Join(errs...)
	}
	s.lines = map[string]int{}
	indexLines(root.Content[0], "", s.lines)
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if _, ok := s.lines["poll_interval"]; !ok {
		s.PollInterval = DefaultPollInterval
	}
	for i := range s.Jobs {
		j := &s.Jobs[i]
		key := "jobs." + strconv.Itoa(i) + "."
		if _, ok := s.lines[key+"processes"]; !ok {
			j.Processes = 1
		}
		if _, ok := s.lines[key+"utilization"]; !ok {
			j.Utilization = DefaultUtilization
		}
		if _, ok := s.lines[key+"memory_mib"]; !ok {
			j.MemoryMiB = DefaultMemoryMiB
		}
		if j.JobID == 0 {
			j.JobID = i + 1
		}
	}
	for i := range s.Faults {
		if _, ok := s.lines["faults."+strconv.Itoa(i)+".back_at"]; !ok {
			s.Faults[i].BackAt = s.Duration
		}
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if err := s.expand(); err != nil {
		return nil, err
	}
	return s, nil
}

// indexLines records the line of every mapping value and sequence item
// under dotted keys ("jobs.2.end"), so validation can point at the field.
func indexLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			out[k] = n.Content[i+1].Line
			indexLines(n.Content[i+1], k+".", out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			k := prefix + strconv.Itoa(i)
			out[k] = c.Line
			indexLines(c, k+".", out)
		}
	}
}

// line is the line of the first key of keys present in the file, or 0.
func (s *Scenario) line(keys ...string) int {
	for _, k := range keys {
		if l, ok := s.lines[k]; ok {
			return l
		}
	}
	return 0
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlError turns yaml.v3's "line N: msg" errors (one per problem for a
// TypeError) and attribution's rule errors into path:line: msg.
func yamlError(path string, err error) error {
	var re *attribution.RuleError
	if errors.As(err, &re) && re.Line > 0 {
		msg := strings.TrimPrefix(re.Error(), fmt.Sprintf("line %d: ", re.Line))
		return &Error{Path: path, Line: re.Line, Err: &relined{msg: msg, err: re}}
	}
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	errs := make([]error, 0, len(msgs))
	for _, m := range msgs {
		e := &Error{Path: path, Err: errors.New(m)}
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			e.Line, _ = strconv.Atoi(g[1])
			e.Err = errors.New(m[len(g[0]):])
		}
		errs = append(errs, e)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// relined is an error whose own "line N:" prefix moved into Error.Line.
type relined struct {
	msg string
	err error
}

func (r *relined) Error() string { return r.msg }
func (r *relined) Unwrap() error { return r.err }
