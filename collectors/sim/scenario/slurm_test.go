package scenario

import (
	"os/exec"
	"strings"
	"testing"
)

const slurmScenario = "start: 2026-11-23T00:00:00Z\nduration: 1h\ngpus: [{}]\n" +
	"tenants: {physics: {uid: 1, cgroup: '/system.slice/slurmstepd.scope/job_{job}/step_0/user/task_0'}}\n" +
	"jobs: [{tenant: physics, job_id: 42, gpu: 0, start: 0s, end: 1h}]\n"

// TestSlurmJobsSqueue: the fake squeue answers for listed jobs in the
// format the attribution asks for, and fails for others.
func TestSlurmJobsSqueue(t *testing.T) {
	d, root := parsedDriver(t, slurmScenario+"slurm_jobs:\n  42: {account: physics, user: alice}\n")
	if !strings.HasPrefix(d.Squeue(), root) {
		t.Fatalf("squeue %q not under the host root %s", d.Squeue(), root)
	}
	out, err := exec.Command(d.Squeue(), "--noheader", "--jobs=42", "--format=%A|%a|%u").Output()
	if err != nil || string(out) != "42|physics|alice\n" {
		t.Errorf("job 42: %q %v", out, err)
	}
	if out, err := exec.Command(d.Squeue(), "--noheader", "--jobs=43", "--format=%A|%a|%u").Output(); err == nil {
		t.Errorf("job 43 (not listed): %q, want an error", out)
	}

	// Without slurm_jobs there is no squeue.
	if d, _ := parsedDriver(t, slurmScenario); d.Squeue() != "" {
		t.Errorf("no slurm_jobs: squeue %q", d.Squeue())
	}
}

// parsedDriver parses a scenario and starts its driver on a new host root.
func parsedDriver(t *testing.T, text string) (*Driver, string) {
	t.Helper()
	s, err := Parse("s.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return startDriver(t, s)
}

// startDriver starts s's driver on a new host root.
func startDriver(t *testing.T, s *Scenario) (*Driver, string) {
	t.Helper()
	root := t.TempDir()
	d, err := NewDriver(s, root)
	if err != nil {
		t.Fatal(err)
	}
	return d, root
}

func TestSlurmJobsErrors(t *testing.T) {
	for _, tc := range []struct{ jobs, want string }{
		{"  42: {account: 'phys ics', user: alice}\n", `s.yaml:7: slurm_jobs.42.account: "phys ics" is not a Slurm name`},
		{"  42: {account: physics}\n", `s.yaml:7: slurm_jobs.42.user: "" is not a Slurm name`},
		{"  0: {account: physics, user: a}\n", `s.yaml:7: slurm_jobs: job id 0 must be positive`},
	} {
		_, err := Parse("s.yaml", []byte(slurmScenario+"slurm_jobs:\n"+tc.jobs))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %s…", tc.jobs, err, tc.want)
		}
	}
}
