package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
)

// shipped are the scenario files in configs/scenarios.
var shipped = []string{
	"../../../configs/scenarios/demo.yaml",
	"../../../configs/scenarios/dgx-h100-day.yaml",
	"../../../configs/scenarios/mig-reconfigure.yaml",
	"../../../configs/scenarios/slurm-accounts.yaml",
}

func TestLoadShipped(t *testing.T) {
	tests := []struct {
		path             string
		name             string
		duration         time.Duration
		gpus, units      int
		tenants, jobs    int
		faults, rules    int
		wantReusedAcross bool // a PID passes from one tenant to another
	}{
		{shipped[0], "demo", 2 * time.Hour, 2, 2, 3, 4, 0, 3, false},
		{shipped[1], "dgx-h100-day", 24 * time.Hour, 8, 18, 10, 27, 1, 6, true},
		// 7 instances until 0:30, then 2 (units of each layout).
		{shipped[2], "mig-reconfigure", time.Hour, 1, 9, 2, 8, 0, 2, false},
		{shipped[3], "slurm-accounts", 2 * time.Hour, 2, 2, 3, 5, 0, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(s.Name, s.Duration, len(s.GPUs), len(s.Units()), len(s.Tenants),
				len(s.Jobs), len(s.Faults), len(s.Attribution.Rules), reusedAcrossTenants(s))
			want := fmt.Sprint(tt.name, tt.duration, tt.gpus, tt.units, tt.tenants,
				tt.jobs, tt.faults, tt.rules, tt.wantReusedAcross)
			if got != want {
				t.Errorf("loaded %s, want %s", got, want)
			}
			if s.PollInterval != time.Second || !s.Start.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("start %v poll %v", s.Start, s.PollInterval)
			}
			if err := s.Attribution.Validate(); err != nil {
				t.Errorf("attribution rules: %v", err)
			}
		})
	}
}

// reusedAcrossTenants reports whether some PID ends in one tenant's job
// exactly when it starts in another's.
func reusedAcrossTenants(s *Scenario) bool {
	for _, p := range s.procs {
		for _, q := range s.procs {
			if p.pid == q.pid && p.end == q.start && s.Jobs[p.job].Tenant != s.Jobs[q.job].Tenant {
				return true
			}
		}
	}
	return false
}

// head is a valid scenario prefix; cases append to it. Its lines are
// counted by the marker, so editing it does not break the cases.
const head = `name: t
start: 2026-11-23T00:00:00Z
duration: 2h
gpus:
  - model: H100-SXM5-80GB
  - model: H100-SXM5-80GB
    mig: [3g.40gb, 1g.10gb]
tenants:
  acme: {user: acme, uid: 2001}
  globex: {uid: 2002, cgroup: "/tenant.slice/tenant-globex.slice/job-{job}.scope"}
`

func TestLoadErrors(t *testing.T) {
	// Each case's YAML marks the line the error must name with "#<".
	tests := []struct {
		name string
		yaml string
		want string // in the message after "bad.yaml:<line>: "
	}{
		{"unknown top-level key", head + "colour: blue #<\n", "colour: unknown field"},
		{"unknown job key", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    start: 0s\n    end: 1h\n    cores: 4 #<\n", "jobs[0].cores: unknown field"},
		{"bad duration", head + "jobs:\n  - {tenant: acme, gpu: 0, start: 0s, end: 10x} #<\n", `jobs[0].end: "10x" is not a duration (e.g. 1s)`},
		{"bare zero is no duration", head + "jobs:\n  - {tenant: acme, gpu: 0, start: 0, end: 1h} #<\n", "jobs[0].start: 0 is not a duration (e.g. 1s)"},
		{"repeated key", head + "duration: 3h #<\n", "already defined"},
		{"end before start", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    start: 1h\n    end: 30m #<\n", "job 1: end 30m0s is not after start 1h0m0s"},
		{"end after duration", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    start: 1h\n    end: 3h #<\n", "after the scenario's duration"},
		{"gpu out of range", head + "jobs:\n  - {tenant: acme, gpu: 0, start: 0s, end: 1h}\n  - tenant: acme\n    gpu: 2 #<\n    start: 0s\n    end: 1h\n", "job 2: gpu 2 out of range"},
		{"mig out of range", head + "jobs:\n  - tenant: acme\n    gpu: 1\n    mig: 2 #<\n    start: 0s\n    end: 1h\n", "mig 2 out of range"},
		{"whole-GPU job on a MIG GPU", head + "jobs:\n  - tenant: acme\n    gpu: 1 #<\n    start: 0s\n    end: 1h\n", "is in MIG mode"},
		{"mig on a whole GPU", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    mig: 0 #<\n    start: 0s\n    end: 1h\n", "not in MIG mode"},
		{"unknown tenant", head + "jobs:\n  - tenant: initech #<\n    gpu: 0\n    start: 0s\n    end: 1h\n", `unknown tenant "initech"`},
		{"utilization over 100", head + "jobs:\n  - {tenant: acme, gpu: 0, start: 0s, end: 1h,\n     utilization: 101} #<\n", "utilization: want 0-100"},
		{"no processes", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    start: 0s\n    end: 1h\n    processes: 0 #<\n", "processes: want at least 1"},
		{"sub-millisecond time", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    start: 1.0005s #<\n    end: 1h\n", "not a whole number of milliseconds"},
		{"reuse_pids without restarts", head + "jobs:\n  - tenant: acme\n    gpu: 0\n    start: 0s\n    end: 1h\n    reuse_pids: true #<\n", "reuse_pids needs restart_every"},
		{"pid held twice", head + "jobs:\n  - {tenant: acme, gpu: 0, start: 0s, end: 1h, pid: 500}\n  - {tenant: globex, gpu: 0, start: 59m, end: 2h, pid: 500} #<\n", "job 2: pid 500 at 59m0s is still held by job 1's process"},
		{"fault back before lost", head + "faults:\n  - gpu: 0\n    lost_at: 1h\n    back_at: 30m #<\n", "fault 1: back_at 30m0s is not after lost_at 1h0m0s"},
		{"faults overlap", head + "faults:\n  - {gpu: 0, lost_at: 10m, back_at: 1h}\n  - gpu: 0\n    lost_at: 50m #<\n", "fault 2: lost_at 50m0s is before the end"},
		{"fault gpu out of range", head + "faults:\n  - gpu: 9 #<\n    lost_at: 10m\n", "fault 1: gpu 9 out of range"},
		{"unknown model", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus:\n  - model: V100 #<\ntenants: {a: {}}\n", `"V100" is not simulated`},
		{"unknown MIG profile", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus:\n  - mig: [1g.10gb, 5g.50gb] #<\ntenants: {a: {}}\n", `mig 1: "5g.50gb" is not a MIG profile`},
		{"gpu uuid not a UUID", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus:\n  - uuid: GPU-given #<\ntenants: {a: {}}\n", "gpu 0: uuid: \"GPU-given\": not a canonical UUID"},
		{"too many slices", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus:\n  - mig: [4g.40gb, 4g.40gb] #<\ntenants: {a: {}}\n", "take 8 slices"},
		{"no start", "duration: 1h\ngpus: [{}]\ntenants: {a: {}}\n", "start: required"},
		{"user without uid", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus: [{}]\ntenants:\n  a:\n    user: alice #<\n", "user alice needs a uid"},
		{"unknown placeholder", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus: [{}]\ntenants:\n  a:\n    cgroup: /x/{slurm_job} #<\n", "unknown placeholder {slurm_job}"},
		{"pod uid placeholder without pod_uid", "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus: [{}]\ntenants:\n  a:\n    cgroup: /kubepods/pod{pod_uid} #<\n", "{pod_uid} needs pod_uid"},
		{"bad attribution rule", head + "attribution:\n  rules:\n    - cgroup: kuberentes #<\n      tenant: x\n", `cgroup: unknown preset "kuberentes"`},
		{"unknown attribution key", head + "attribution:\n  rules: []\n  default: x #<\n", "attribution.default: unknown field"},
		{"yaml syntax", head + "jobs: [ #<\n", "did not find expected node content"},
		{"reconfigure gpu out of range", head + "reconfigure:\n  - gpu: 5 #<\n    at: 1h\n    mig: []\n", "reconfigure 1: gpu 5 out of range"},
		{"reconfigure without at", head + "reconfigure:\n  - gpu: 1 #<\n    mig: []\n", "reconfigure 1: at: required"},
		{"reconfigure at the start", head + "reconfigure:\n  - {gpu: 1, at: 0s, mig: []} #<\n", "at: 0s is not inside the scenario"},
		{"reconfigure after the end", head + "reconfigure:\n  - gpu: 1\n    at: 3h #<\n    mig: []\n", "at: 3h0m0s is not inside the scenario"},
		{"reconfigure without mig", head + "reconfigure:\n  - {gpu: 1, at: 1h} #<\n", "mig: required: the new layout ([] turns MIG off)"},
		{"reconfigure MIG off twice", head + "reconfigure:\n  - {gpu: 0, at: 1h, mig: []} #<\n", "gpu 0 is not in MIG mode at 1h0m0s: nothing to turn off"},
		{"reconfigure to an unknown profile", head + "reconfigure:\n  - gpu: 1\n    at: 1h\n    mig: [1g.10gb, 9g.90gb] #<\n", `reconfigure 1: mig 1: "9g.90gb" is not a MIG profile`},
		{"reconfigure over a profile's count", head + "reconfigure:\n  - gpu: 1\n    at: 1h\n    mig: [1g.20gb, 1g.20gb, 1g.20gb, 1g.20gb, 1g.20gb] #<\n", `reconfigure 1: mig: MIG profile "1g.20gb" used 5 times`},
		{"reconfigurations out of order", head + "reconfigure:\n  - {gpu: 1, at: 1h, mig: []}\n  - {gpu: 1, at: 30m, mig: [3g.40gb]} #<\n", "reconfigure 2: at 30m0s is not after gpu 1's previous reconfiguration at 1h0m0s"},
		{"unknown reconfigure key", head + "reconfigure:\n  - {gpu: 1, at: 1h, mig: [], when: 2h} #<\n", "reconfigure[0].when: unknown field"},
		{"job across a reconfiguration", head + "reconfigure:\n  - {gpu: 1, at: 1h, mig: [3g.40gb]}\njobs:\n  - tenant: acme\n    gpu: 1\n    mig: 0\n    start: 30m\n    end: 90m #<\n",
			"job 1: end 1h30m0s is after gpu 1's reconfiguration at 1h0m0s"},
		{"job on an instance the new layout lacks", head + "reconfigure:\n  - {gpu: 1, at: 1h, mig: [3g.40gb]}\njobs:\n  - tenant: acme\n    gpu: 1\n    mig: 1 #<\n    start: 1h\n    end: 2h\n",
			"job 1: mig 1 out of range (gpu 1 has 1 instances from 1h0m0s (line"},
		{"job on a MIG instance after MIG off", head + "reconfigure:\n  - {gpu: 1, at: 1h, mig: []}\njobs:\n  - tenant: acme\n    gpu: 1\n    mig: 0 #<\n    start: 1h\n    end: 2h\n",
			"job 1: gpu 1 is not in MIG mode from 1h0m0s"},
		{"reconfigure a lost GPU", head + "faults:\n  - {gpu: 1, lost_at: 50m, back_at: 70m}\nreconfigure:\n  - gpu: 1\n    at: 1h #<\n    mig: []\n",
			"reconfigure 1: gpu 1 is lost at 1h0m0s (fault 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := 0
			for i, l := range strings.Split(tt.yaml, "\n") {
				if strings.Contains(l, "#<") {
					line = i + 1
				}
			}
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			prefix := "bad.yaml:"
			if line > 0 {
				prefix = fmt.Sprintf("bad.yaml:%d: ", line)
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant %q…%q", err, prefix, tt.want)
			}
			var se *Error
			if !errors.As(err, &se) || se.Path != "bad.yaml" {
				t.Errorf("error %#v is not a *scenario.Error for bad.yaml", err)
			}
		})
	}
}

func TestLoadErrorKeepsRuleError(t *testing.T) {
	_, err := Parse("bad.yaml", []byte(head+"attribution:\n  rules:\n    - {user: a, uid: 1, tenant: x}\n"))
	var re *attribution.RuleError
	if !errors.As(err, &re) || re.Field != "uid" {
		t.Fatalf("error %v: want an attribution.RuleError on uid inside", err)
	}
}

func TestLoadDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "small.yaml")
	data := head + "jobs:\n  - {tenant: acme, gpu: 0, start: 0s, end: 1h}\n  - {tenant: acme, gpu: 0, start: 0s, end: 1h, processes: 3, utilization: 0, memory_mib: 0, job_id: 77}\nfaults:\n  - {gpu: 0, lost_at: 1h}\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	j0, j1 := s.Jobs[0], s.Jobs[1]
	got := fmt.Sprint(s.Path == path, s.PollInterval, j0.Processes, j0.Utilization, j0.MemoryMiB, j0.JobID,
		j1.Processes, j1.Utilization, j1.MemoryMiB, j1.JobID, s.Faults[0].BackAt)
	want := fmt.Sprint(true, time.Second, 1, 100, 1024, 1, 3, 0, 0, 77, 2*time.Hour)
	if got != want {
		t.Errorf("defaults %s, want %s", got, want)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
