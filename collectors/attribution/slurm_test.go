package attribution

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSqueue writes a squeue stand-in that answers from a table of
// "id|account|user" lines and logs each call's job to calls, and returns
// its path. Unknown jobs fail as squeue does.
func fakeSqueue(t *testing.T, jobs ...string) (path, calls string) {
	t.Helper()
	dir := t.TempDir()
	path, calls = filepath.Join(dir, "squeue"), filepath.Join(dir, "calls")
	var cases strings.Builder
	for _, j := range jobs {
		id, _, _ := strings.Cut(j, "|")
		cases.WriteString("  " + id + ") echo '" + j + "' ;;\n")
	}
	script := "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --jobs=*) id=\"${a#--jobs=}\";; esac; done\n" +
		"[ \"$1 $3\" = \"--noheader --format=%A|%a|%u\" ] || { echo \"bad arguments: $*\" >&2; exit 2; }\n" +
		"echo \"$id\" >> " + calls + "\n" +
		"case \"$id\" in\n" + cases.String() +
		"  slow) exec sleep 30 ;;\n" +
		"  *) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;\nesac\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, calls
}

func callsOf(t *testing.T, calls string) []string {
	t.Helper()
	b, err := os.ReadFile(calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func slurmPath(job string) string {
	return "/system.slice/slurmstepd.scope/job_" + job + "/step_0/user/task_0"
}

// TestSlurmAccountFromController: ${account} and ${user} come from squeue,
// asked once per job however many processes it has, never from the
// process's environment (which the job sets, and here forges).
func TestSlurmAccountFromController(t *testing.T) {
	squeue, calls := fakeSqueue(t, "4242|physics|alice", "77|chem|bob")
	h := newFakeHost(t, "root:x:0:0::/root:/bin/bash\n")
	h.proc(500, 100, 1000, slurmPath("4242"))
	h.proc(501, 100, 1000, slurmPath("4242"))
	h.write("proc/501/environ", "SLURM_JOB_ID=4242\x00SLURM_JOB_ACCOUNT=free\x00SLURM_JOB_USER=nobody\x00")
	h.proc(600, 100, 1001, "/slurm/uid_1001/job_77/step_batch/task_0")
	a, err := New(mustConfig(t, `rules:
  - cgroup: slurm
    tenant: ${account}
    squeue: `+squeue+`
`), h.root)
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot(wholeGPU("GPU-0", proc(500, 50), proc(501, 50)), wholeGPU("GPU-1", proc(600, 10)))
	want := "GPU-0: [physics cgroup:slurm w=1 pids=[500 501]]\nGPU-1: [chem cgroup:slurm w=1 pids=[600]]\n"
	for range 3 {
		if got := render(a.Attribute(context.Background(), snap)); got != want {
			t.Fatalf("got\n%swant\n%s", got, want)
		}
	}
	if got := callsOf(t, calls); strings.Join(got, " ") != "4242 77" {
		t.Errorf("squeue asked about %v, want each job once: [4242 77]", got)
	}

	// ${user} the same way, with the job in the tenant too.
	h.proc(700, 100, 0, slurmPath("77"))
	b, err := New(mustConfig(t, `rules:
  - cgroup: slurm
    tenant: ${account}-${user}-${job}
    squeue: `+squeue+`
`), h.root)
	if err != nil {
		t.Fatal(err)
	}
	got := render(b.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(700, -1)))))
	if want := "GPU-0: [chem-bob-77 cgroup:slurm w=1 pids=[700]]\n"; got != want {
		t.Errorf("got %swant %s", got, want)
	}
}

// TestSlurmLookupFailureFallsThrough: a job squeue does not know makes the
// account rule not match, so the next rule decides; the failure is cached
// for failedSlurmTTL, then asked again.
func TestSlurmLookupFailureFallsThrough(t *testing.T) {
	squeue, calls := fakeSqueue(t, "4242|physics|alice")
	h := newFakeHost(t, "root:x:0:0::/root:/bin/bash\n")
	h.proc(500, 100, 0, slurmPath("9"))
	a, err := New(mustConfig(t, `rules:
  - cgroup: slurm
    tenant: ${account}
    squeue: `+squeue+`
  - cgroup: slurm
    tenant: slurm-job-${job}
`), h.root)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.rules[0].paths.(*slurmMatcher).lookup.now = func() time.Time { return now }
	attr := func(pid uint32) string {
		return render(a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(pid, -1)))))
	}
	if got, want := attr(500), "GPU-0: [slurm-job-9 cgroup:slurm w=1 pids=[500]]\n"; got != want {
		t.Fatalf("got %swant %s", got, want)
	}
	h.proc(501, 100, 0, slurmPath("9")) // a new process of the same job
	now = now.Add(failedSlurmTTL - time.Second)
	attr(501)
	if got := callsOf(t, calls); len(got) != 1 {
		t.Errorf("squeue called %d times within the failure's TTL, want 1: %v", len(got), got)
	}
	h.proc(502, 100, 0, slurmPath("9"))
	now = now.Add(2 * time.Second)
	attr(502)
	if got := callsOf(t, calls); len(got) != 2 {
		t.Errorf("squeue called %d times after the failure's TTL, want 2: %v", len(got), got)
	}
}

// TestSlurmLookupBounds: a squeue that hangs is cut off at the timeout,
// and the cache holds at most its bound of jobs, the oldest leaving first.
func TestSlurmLookupBounds(t *testing.T) {
	squeue, calls := fakeSqueue(t, "1|a|u", "2|b|u", "3|c|u")
	l := newSlurmLookup(squeue)
	l.timeout = 200 * time.Millisecond
	start := time.Now()
	if _, err := l.job("slow"); err == nil || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("hanging squeue: err %v, want no answer within 200ms", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hanging squeue took %v", d)
	}

	l.max = 2
	for _, id := range []string{"1", "2", "3", "3", "2", "1"} {
		if j, err := l.job(id); err != nil || j.user != "u" {
			t.Fatalf("job %s: %+v %v", id, j, err)
		}
		if len(l.cache) > l.max || len(l.order) != len(l.cache) {
			t.Fatalf("cache %d entries, order %d, bound %d", len(l.cache), len(l.order), l.max)
		}
	}
	// 1 and 2 asked, 3 evicts slow... then 1 (evicted by 3) asked again.
	if got := strings.Join(callsOf(t, calls), " "); got != "slow 1 2 3 1" {
		t.Errorf("squeue calls %q, want %q", got, "slow 1 2 3 1")
	}
}

// TestSlurmNoLookupWithoutAccount: a tenant made of path groups only never
// runs squeue.
func TestSlurmNoLookupWithoutAccount(t *testing.T) {
	squeue, calls := fakeSqueue(t, "4242|physics|alice")
	h := newFakeHost(t, "root:x:0:0::/root:/bin/bash\n")
	h.proc(500, 100, 0, slurmPath("4242"))
	a, err := New(mustConfig(t, "rules:\n  - cgroup: slurm\n    tenant: slurm-job-${job}\n"), h.root, WithSqueue(squeue))
	if err != nil {
		t.Fatal(err)
	}
	got := render(a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(500, -1)))))
	if want := "GPU-0: [slurm-job-4242 cgroup:slurm w=1 pids=[500]]\n"; got != want {
		t.Errorf("got %swant %s", got, want)
	}
	if c := callsOf(t, calls); c != nil {
		t.Errorf("squeue called: %v", c)
	}
	// WithSqueue is the default of rules that name none.
	b, err := New(mustConfig(t, "rules:\n  - cgroup: slurm\n    tenant: ${user}\n"), h.root, WithSqueue(squeue))
	if err != nil {
		t.Fatal(err)
	}
	got = render(b.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(500, -1)))))
	if want := "GPU-0: [alice cgroup:slurm w=1 pids=[500]]\n"; got != want {
		t.Errorf("got %swant %s", got, want)
	}
}

func TestParseSqueue(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{"4242|physics|alice\n", ""},
		{"", "squeue printed 0 lines for job 4242, want 1"},
		{"4242|a|u\n4242|a|u\n", "squeue printed 2 lines for job 4242, want 1"},
		{"4243|physics|alice\n", `squeue answered for job "4243", asked for 4242`},
		{"4242|physics\n", `squeue line "4242|physics": want job|account|user`},
		{"4242|(null)|alice\n", `squeue line "4242|(null)|alice": job 4242 has no usable account`},
		{"4242|physics|\n", `squeue line "4242|physics|": job 4242 has no usable user`},
	} {
		j, err := parseSqueue("4242", tc.out)
		switch {
		case tc.want == "" && (err != nil || j != slurmJob{account: "physics", user: "alice"}):
			t.Errorf("%q: %+v %v", tc.out, j, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%q: err %v, want %s", tc.out, err, tc.want)
		}
	}
}

func TestSqueueFieldErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"rules:\n  - cgroup: docker\n    tenant: x\n    squeue: /usr/bin/squeue\n",
			"line 4: attribution rule: squeue: only for the slurm preset (cgroup: slurm)"},
		{"rules:\n  - cgroup: slurm\n    tenant: x\n    squeue: bin/squeue\n",
			`line 4: attribution rule: squeue: "bin/squeue" is not an absolute path`},
	} {
		_, err := decodeConfig(tc.yaml)
		if err == nil || err.Error() != tc.want {
			t.Errorf("err %v, want %s", err, tc.want)
		}
	}
}
