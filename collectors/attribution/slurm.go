package attribution

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Slurm accounts and users.
//
// The slurm preset takes the job id from the process's cgroup path, which
// slurmstepd creates and the job's processes cannot leave or rename. The
// job's account and user come from the Slurm controller, through
//
//	squeue --noheader --jobs=<id> --format=%A|%a|%u
//
// never from the process's environment: SLURM_JOB_ACCOUNT and the like
// are set by and for the job, and the job can change them. squeue is
// asked for those three fields only, so nothing the job's owner sets (its
// name, comment or command, which `scontrol show job -o` prints on the
// same line as Account=) can pass for an account. The answer is cached per
// job id (at most maxSlurmJobs ids, the oldest forgotten first), a failure
// for failedSlurmTTL, and each call is bounded by slurmTimeout.

// Groups the slurm preset adds to those of its cgroup paths.
const (
	groupAccount = "account"
	groupUser    = "user"
)

const (
	slurmTimeout   = 2 * time.Second
	failedSlurmTTL = 30 * time.Second
	maxSlurmJobs   = 4096
	// defaultSqueue is found through PATH when a rule names no squeue.
	defaultSqueue = "squeue"
)

// WithSqueue sets the squeue command of slurm rules that name none in
// their `squeue` field (default: squeue, found through PATH); "" keeps the
// default. The simulator points it at its fake.
func WithSqueue(path string) Option {
	return func(a *Attributor) {
		if path != "" {
			a.squeue = path
		}
	}
}

// slurmJob is what the controller says about one job.
type slurmJob struct {
	account, user string
}

type slurmEntry struct {
	job    slurmJob
	err    error
	failed time.Time // when err was seen
}

// slurmLookup asks squeue about jobs and caches the answers.
type slurmLookup struct {
	command string
	log     *slog.Logger
	now     func() time.Time
	timeout time.Duration // slurmTimeout; tests shorten it
	max     int           // maxSlurmJobs; tests lower it

	mu    sync.Mutex
	cache map[string]slurmEntry
	order []string // cache keys, oldest first
}

func newSlurmLookup(command string) *slurmLookup {
	return &slurmLookup{command: command, log: slog.Default(), now: time.Now,
		timeout: slurmTimeout, max: maxSlurmJobs, cache: map[string]slurmEntry{}}
}

// job returns the account and user of job id, from the cache or squeue.
func (l *slurmLookup) job(id string) (slurmJob, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.cache[id]; ok {
		if e.err == nil || l.now().Sub(e.failed) < failedSlurmTTL {
			return e.job, e.err
		}
	}
	j, err := l.query(id)
	e := slurmEntry{job: j, err: err}
	if err != nil {
		e.failed = l.now()
		l.log.Warn("cannot read the Slurm job's account and user; rules that need them do not match its processes until it can",
			"job", id, "retry_after", failedSlurmTTL, "err", err)
	}
	if _, ok := l.cache[id]; !ok {
		if len(l.order) >= l.max {
			delete(l.cache, l.order[0])
			l.order = l.order[1:]
		}
		l.order = append(l.order, id)
	}
	l.cache[id] = e
	return j, err
}

// query runs squeue for one job and checks its answer.
func (l *slurmLookup) query(id string) (slurmJob, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	// The command is the operator's (config); the id is the digits of a
	// cgroup path, passed as one argument, never through a shell.
	cmd := exec.CommandContext(ctx, l.command, "--noheader", "--jobs="+id, "--format=%A|%a|%u") //nolint:gosec // G204: see above
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return slurmJob{}, fmt.Errorf("%s: no answer within %v", l.command, l.timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return slurmJob{}, fmt.Errorf("%s: %w: %s", l.command, err, msg)
	}
	return parseSqueue(id, stdout.String())
}

// parseSqueue reads the one line `id|account|user` squeue prints for job
// id. Anything else (no line: the job is unknown; several; another id; an
// empty or blank field) is an error.
func parseSqueue(id, out string) (slurmJob, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		return slurmJob{}, fmt.Errorf("squeue printed %d lines for job %s, want 1", len(lines)-boolInt(lines[0] == ""), id)
	}
	f := strings.Split(strings.TrimSpace(lines[0]), "|")
	if len(f) != 3 {
		return slurmJob{}, fmt.Errorf("squeue line %q: want job|account|user", lines[0])
	}
	if f[0] != id {
		return slurmJob{}, fmt.Errorf("squeue answered for job %q, asked for %s", f[0], id)
	}
	j := slurmJob{account: f[1], user: f[2]}
	for _, v := range []struct{ name, val string }{{groupAccount, j.account}, {groupUser, j.user}} {
		if v.val == "" || v.val == "(null)" || strings.ContainsAny(v.val, " \t") {
			return slurmJob{}, fmt.Errorf("squeue line %q: job %s has no usable %s", lines[0], id, v.name)
		}
	}
	return j, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// slurmMatcher is the slurm preset: the cgroup path's groups, then the
// account and user squeue gives for the job, when the rule's tenant needs
// them (lookup != nil).
type slurmMatcher struct {
	paths   *regexMatcher
	names   []string
	job     int // index of the job group
	lookup  *slurmLookup
	command string // the rule's squeue, "" for the attributor's default
}

func newSlurmMatcher(paths *regexMatcher) *slurmMatcher {
	return &slurmMatcher{
		paths: paths,
		names: append(append([]string(nil), paths.groups()...), groupAccount, groupUser),
		job:   paths.index("job"),
	}
}

func (m *slurmMatcher) groups() []string { return m.names }

func (m *slurmMatcher) match(path string, vals []string) bool {
	n := len(m.paths.groups())
	if !m.paths.match(path, vals[:n]) {
		return false
	}
	vals[n], vals[n+1] = "", ""
	if m.lookup != nil {
		// A failed lookup leaves both empty: a tenant that names them
		// does not match (template.expand), and the next rule is tried.
		if j, err := m.lookup.job(vals[m.job]); err == nil {
			vals[n], vals[n+1] = j.account, j.user
		}
	}
	return true
}

// prepare starts the matcher's lookup when the tenant template names the
// account or the user; command is the attributor's default squeue.
func (m *slurmMatcher) prepare(t template, command string, log *slog.Logger) {
	n := len(m.paths.groups())
	if !t.uses(n) && !t.uses(n+1) {
		return
	}
	if m.command != "" {
		command = m.command
	}
	m.lookup = newSlurmLookup(command)
	m.lookup.log = log
}

// uses reports whether the template names group g.
func (t template) uses(g int) bool {
	for _, p := range t.parts {
		if p.group == g {
			return true
		}
	}
	return false
}

// checkSqueue validates a rule's squeue field: only on the slurm preset,
// and an absolute path (the agent's PATH is not the operator's shell's).
func checkSqueue(r Rule) error {
	if r.Squeue == "" {
		return nil
	}
	if r.Cgroup != "slurm" {
		return errors.New("only for the slurm preset (cgroup: slurm)")
	}
	if !filepath.IsAbs(r.Squeue) {
		return fmt.Errorf("%q is not an absolute path", r.Squeue)
	}
	return nil
}
