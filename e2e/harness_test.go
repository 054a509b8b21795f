package e2e

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/protocol"
)

// bin holds the binaries TestMain builds.
var bin struct{ gpumeter, authority string }

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gpumeter-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.Command(goTool, "build", "-o", dir+string(os.PathSeparator),
		"github.com/gpumeter/gpumeter/cmd/gpumeter", "github.com/gpumeter/gpumeter/cmd/voucher-authority")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build the binaries: %v\n%s", err, out)
		return 1
	}
	bin.gpumeter = filepath.Join(dir, "gpumeter")
	bin.authority = filepath.Join(dir, "voucher-authority")
	return m.Run()
}

// Proc is one running binary: its stderr is read line by line (kept as a
// tail for failure messages, and offered to WaitLog).
type Proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, once done

	mu    sync.Mutex
	lines []string // every line so far
	grew  chan struct{}
}

// start runs path with args; the process is killed when t ends if it is
// still running.
func start(t testing.TB, name, path string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(path, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{t: t, name: name, cmd: cmd, done: make(chan struct{}), grew: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Log is every line the process wrote so far.
func (p *Proc) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Tail is the process's last n lines, for failure messages.
func (p *Proc) Tail(n int) string {
	l := p.Log()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// WaitLog waits until a line containing s appears (counting lines already
// written) and returns it; it fails the test after d or if the process
// exits first.
func (p *Proc) WaitLog(s string, d time.Duration) string {
	p.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], s) {
				l := p.lines[seen]
				p.mu.Unlock()
				return l
			}
		}
		grew := p.grew
		p.mu.Unlock()
		select {
		case <-grew:
		case <-p.done:
			// Lines written before the exit are read before done closes.
			if l, ok := p.find(s); ok {
				return l
			}
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, s, p.Tail(30))
		case <-deadline.C:
			p.t.Fatalf("%s did not log %q within %s:\n%s", p.name, s, d, p.Tail(30))
		}
	}
}

func (p *Proc) find(s string) (string, bool) {
	for _, l := range p.Log() {
		if strings.Contains(l, s) {
			return l, true
		}
	}
	return "", false
}

// Signal sends sig and, unless it is SIGHUP, waits for the exit and
// returns Wait's error.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
	if sig == syscall.SIGHUP {
		return nil
	}
	return p.Wait(time.Minute)
}

// Stop sends SIGTERM and fails the test unless the process exits 0.
func (p *Proc) Stop() {
	p.t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("%s after SIGTERM: %v\n%s", p.name, err, p.Tail(30))
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() { _ = p.Signal(syscall.SIGKILL) }

// Wait waits at most d for the exit and returns Wait's error.
func (p *Proc) Wait(d time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s:\n%s", p.name, d, p.Tail(30))
		return nil
	}
}

// ExitCode is the exit status once the process has exited (-1 for a signal).
func (p *Proc) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// run runs a binary to completion and returns its combined output and
// exit code.
func run(t testing.TB, path string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("run %s %v: %v", filepath.Base(path), args, err)
		return "", -1
	}
}

// Authority is a `voucher-authority serve` process on its own database.
type Authority struct {
	t      testing.TB
	Dir    string
	DB     string // the --db value: a SQLite file or a postgres:// URL
	Config string
	URL    string // set while serving
	Proc   *Proc
	// LogKey is the verifiable log's verifier key (AuthorityOptions.Log),
	// as agents pin it in authority.log_key.
	LogKey string
	driver string
	db     *sql.DB // the test's own connection (Open)
}

// AuthorityOptions configure NewAuthority.
type AuthorityOptions struct {
	// Postgres runs the authority on a fresh PostgreSQL database
	// (GPUMETER_TEST_POSTGRES; skipped, or failed under
	// GPUMETER_TEST_REQUIRE=1, when unset). Default SQLite.
	Postgres bool
	// Log gives the authority a verifiable log: a key from `voucher-authority
	// log keygen` and the verifiable_log section (Authority.LogKey).
	Log bool
	// Extra is appended to the authority's YAML config.
	Extra string
}

// NewAuthority prepares an authority (config and database) without
// starting it; the registry commands work on its DB before Start.
func NewAuthority(t testing.TB, o AuthorityOptions) *Authority {
	t.Helper()
	a := &Authority{t: t, Dir: t.TempDir(), driver: "sqlite"}
	a.DB = filepath.Join(a.Dir, "authority.db")
	store := fmt.Sprintf("{driver: sqlite, path: %q}", a.DB)
	if o.Postgres {
		a.driver = "pgx"
		a.DB = testenv.PostgresDSN(t)
		// serve refuses a password in the DSN: it goes in a 0600 file.
		u, err := url.Parse(a.DB)
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		u.User = url.User(u.User.Username())
		pwFile := filepath.Join(a.Dir, "postgres.password")
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		store = fmt.Sprintf("{driver: postgres, dsn: %q, password_file: %q}", u.String(), pwFile)
	}
	a.Config = filepath.Join(a.Dir, "authority.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nstore: %s\n", store)
	if o.Log {
		const origin = "e2e.gpumeter.test/log"
		keyFile := filepath.Join(a.Dir, "log.key")
		out := a.MustCLI("log", "keygen", "--origin", origin, keyFile)
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "verifier_key: "); ok {
				a.LogKey = strings.TrimSpace(v)
			}
		}
		if a.LogKey == "" {
			t.Fatalf("no verifier_key in log keygen's output:\n%s", out)
		}
		cfg += fmt.Sprintf("verifiable_log: {key_file: %q, origin: %q}\n", keyFile, origin)
	}
	cfg += o.Extra
	if err := os.WriteFile(a.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// Start runs serve and waits until it listens; it can be called again
// after Stop or Kill (a restart, on a new port).
func (a *Authority) Start() {
	a.t.Helper()
	a.Proc = start(a.t, "voucher-authority", bin.authority, "serve", "--config", a.Config)
	line := a.Proc.WaitLog("voucher authority serving", time.Minute)
	var l struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &l); err != nil || l.Addr == "" {
		// A text log line: addr=HOST:PORT.
		if i := strings.Index(line, "addr="); i >= 0 {
			l.Addr = strings.Fields(line[i+len("addr="):])[0]
		}
	}
	if l.Addr == "" {
		a.t.Fatalf("no address in %q", line)
	}
	a.URL = "http://" + l.Addr
}

// CLI runs `voucher-authority args...` and returns its output and exit
// code. The caller adds --db a.DB where the command takes it.
func (a *Authority) CLI(args ...string) (string, int) {
	a.t.Helper()
	return run(a.t, bin.authority, args...)
}

// MustCLI is CLI that fails the test on a non-zero exit.
func (a *Authority) MustCLI(args ...string) string {
	a.t.Helper()
	out, code := a.CLI(args...)
	if code != 0 {
		a.t.Fatalf("voucher-authority %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// Open opens the authority's database for the test's own queries (one
// pool per authority, closed when the test ends or the database is
// restored).
func (a *Authority) Open() *sql.DB {
	a.t.Helper()
	if a.db != nil {
		return a.db
	}
	src := a.DB
	if a.driver == "sqlite" {
		src = "file:" + a.DB + "?_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(a.driver, src)
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { db.Close() })
	a.db = db
	return db
}

// StoredRecord is one record as the authority stored it.
type StoredRecord struct {
	Seq                       int64
	ID, Unit, Kind, Tenant    string
	Gap                       string
	StartMS, EndMS, GPUMillis int64
}

// Stored is every record of node the authority holds, by sequence.
func (a *Authority) Stored(node string) []StoredRecord {
	a.t.Helper()
	db := a.Open()
	q := `SELECT seq, record_id, gpu_uuid, kind, tenant, gap_reason, window_start_ms, window_end_ms, gpu_ms
		FROM records WHERE node_id = ` + placeholder(a.driver) + ` ORDER BY seq`
	rows, err := db.Query(q, node)
	if err != nil {
		a.t.Fatal(err)
	}
	defer rows.Close()
	var out []StoredRecord
	for rows.Next() {
		var r StoredRecord
		if err := rows.Scan(&r.Seq, &r.ID, &r.Unit, &r.Kind, &r.Tenant, &r.Gap, &r.StartMS, &r.EndMS, &r.GPUMillis); err != nil {
			a.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		a.t.Fatal(err)
	}
	return out
}

// KeepAddress makes the next Start listen where this one does: agents
// that keep running find a restarted authority at the URL they have.
func (a *Authority) KeepAddress() {
	a.t.Helper()
	b, err := os.ReadFile(a.Config)
	if err != nil {
		a.t.Fatal(err)
	}
	addr := strings.TrimPrefix(a.URL, "http://")
	cfg := strings.Replace(string(b), "listen: 127.0.0.1:0\n", "listen: "+addr+"\n", 1)
	if err := os.WriteFile(a.Config, []byte(cfg), 0o600); err != nil {
		a.t.Fatal(err)
	}
}

// Head is the node's head at the authority: its sequence number and hash.
func (a *Authority) Head(node string) (seq int64, hash string) {
	a.t.Helper()
	q := `SELECT head_seq, head_hash FROM nodes WHERE id = ` + placeholder(a.driver)
	if err := a.Open().QueryRow(q, node).Scan(&seq, &hash); err != nil {
		a.t.Fatalf("head of %s: %v", node, err)
	}
	return seq, hash
}

// BackupTools checks, before a test does any work, that Snapshot and
// Restore can run: for PostgreSQL pg_dump and pg_restore, from PATH or
// /usr/lib/postgresql/*/bin; the test is skipped (failed under
// GPUMETER_TEST_REQUIRE=1) without them.
func (a *Authority) BackupTools() {
	a.t.Helper()
	if a.driver == "pgx" {
		pgTool(a.t, "pg_dump")
		pgTool(a.t, "pg_restore")
	}
}

// Snapshot backs the database up while the authority may be serving, as
// docs/operations.md "A restored authority" says (SQLite: VACUUM INTO;
// PostgreSQL: pg_dump -Fc), and returns the backup's path.
func (a *Authority) Snapshot() string {
	a.t.Helper()
	backup := filepath.Join(a.t.TempDir(), "authority.backup")
	if a.driver == "pgx" {
		if out, err := exec.Command(pgTool(a.t, "pg_dump"), "-Fc", "-f", backup, a.DB).CombinedOutput(); err != nil {
			a.t.Fatalf("pg_dump: %v\n%s", err, out)
		}
		return backup
	}
	if _, err := a.Open().Exec(`VACUUM INTO ?`, backup); err != nil {
		a.t.Fatalf("VACUUM INTO %s: %v", backup, err)
	}
	return backup
}

// Restore replaces the database with a Snapshot; the authority must be
// stopped. SQLite: the backup is copied in as the database file (its -wal
// and -shm removed); PostgreSQL: pg_restore --clean into the same
// database.
func (a *Authority) Restore(backup string) {
	a.t.Helper()
	if a.db != nil {
		a.db.Close()
		a.db = nil
	}
	if a.driver == "pgx" {
		out, err := exec.Command(pgTool(a.t, "pg_restore"), "--clean", "--if-exists", "--single-transaction",
			"-d", a.DB, backup).CombinedOutput()
		if err != nil {
			a.t.Fatalf("pg_restore: %v\n%s", err, out)
		}
		return
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		a.t.Fatal(err)
	}
	for _, f := range []string{a.DB + "-wal", a.DB + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.t.Fatal(err)
		}
	}
	tmp := a.DB + ".restore"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(tmp, a.DB); err != nil {
		a.t.Fatal(err)
	}
}

// pgTool finds a PostgreSQL client program: in PATH, else the newest
// /usr/lib/postgresql/VERSION/bin has it; else the test is skipped.
func pgTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	found, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql", "*", "bin", name))
	if len(found) == 0 {
		msg := fmt.Sprintf("%s not found in PATH nor in /usr/lib/postgresql/*/bin: apt-get install postgresql-client", name)
		if testenv.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	sort.Slice(found, func(i, j int) bool { return pgVersion(found[i]) < pgVersion(found[j]) })
	return found[len(found)-1]
}

// pgVersion is the major version in /usr/lib/postgresql/VERSION/bin/NAME.
func pgVersion(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

func placeholder(driver string) string {
	if driver == "pgx" {
		return "$1"
	}
	return "?"
}

// Node is a simulated GPU node: its state directory with the key, its
// agent config and the scenario it replays.
type Node struct {
	t           testing.TB
	ID          string
	Provider    string
	Dir         string // the state directory (node.key, spool.db, sim-anchor.json)
	Config      string
	RecordsFile string
	PublicKey   string
	Scenario    *Scenario
	Agent       *Proc  // the latest agent process
	MetricsURL  string // the latest agent's /metrics
	// refusedAsSigner is set by the clone test on the copy the authority
	// refused as a second signer.
	refusedAsSigner bool
}

// Scenario is a simulated node's timeline (collectors/sim/scenario).
type Scenario struct {
	// YAML is the scenario file. Its GPUs and duration must match GPUs
	// and Duration.
	YAML     string
	GPUs     map[string]string // UUID -> model (as `voucher-authority models` names it)
	Duration time.Duration
}

// OneGPU is a one-hour scenario: one H100, tenant acme using it from the
// fifth to the fifty-fifth minute.
func OneGPU(uuid string) *Scenario {
	return &Scenario{
		YAML: fmt.Sprintf(`name: e2e-one-gpu
start: 2026-01-01T00:00:00Z
duration: 1h
gpus:
  - {model: H100-SXM5-80GB, uuid: %s}
tenants:
  acme: {user: acme, uid: 2001}
jobs:
  - {tenant: acme, gpu: 0, start: 5m, end: 55m}
attribution:
  rules:
    - {user: acme, tenant: acme}
`, uuid),
		GPUs:     map[string]string{uuid: "H100-SXM5-80GB"},
		Duration: time.Hour,
	}
}

// NodeOptions configure NewNode.
type NodeOptions struct {
	ID       string // default "e2e-node"
	Provider string // default "e2e-cloud"
	Scenario *Scenario
	// Speed is the simulation's speed (default 600: an hour in six seconds).
	Speed int
	// Unregistered lists GPUs the registration leaves out (the operator
	// forgot them).
	Unregistered []string
	// NoRegister leaves the node unregistered.
	NoRegister bool
	// Authority is added to the agent's authority section (e.g.
	// `log_key: "..."`).
	Authority string
	// Extra is appended to the agent's YAML config.
	Extra string
}

// StartOneNode starts an authority of default options and one node of o
// delivering to it.
func StartOneNode(t testing.TB, o NodeOptions) (*Authority, *Node) {
	t.Helper()
	a := NewAuthority(t, AuthorityOptions{})
	a.Start()
	n := NewNode(t, a, o)
	n.Start()
	return a, n
}

// NewNode creates a node's key (gpumeter keygen), registers it with a
// (the operator attests the models and a service date before the
// simulated timeline), and writes its agent config. The agent is not
// started.
func NewNode(t testing.TB, a *Authority, o NodeOptions) *Node {
	t.Helper()
	if o.ID == "" {
		o.ID = "e2e-node"
	}
	if o.Provider == "" {
		o.Provider = "e2e-cloud"
	}
	if o.Speed == 0 {
		o.Speed = 600
	}
	base := t.TempDir()
	n := &Node{t: t, ID: o.ID, Provider: o.Provider, Dir: filepath.Join(base, "state"), Scenario: o.Scenario,
		Config: filepath.Join(base, "agent.yaml"), RecordsFile: filepath.Join(base, "records.jsonl")}
	if err := os.Mkdir(n.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, bin.gpumeter, "keygen", filepath.Join(n.Dir, "node.key"))
	if code != 0 {
		t.Fatalf("gpumeter keygen: exit %d\n%s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "public_key: "); ok {
			n.PublicKey = strings.TrimSpace(v)
		}
	}
	if n.PublicKey == "" {
		t.Fatalf("no public_key in keygen's output:\n%s", out)
	}
	if !o.NoRegister {
		args := []string{"node", "register", "--db", a.DB, "--id", n.ID, "--provider", n.Provider,
			"--public-key", n.PublicKey, "--since", n.Since()}
		skip := map[string]bool{}
		for _, g := range o.Unregistered {
			skip[g] = true
		}
		for _, g := range slices.Sorted(maps.Keys(o.Scenario.GPUs)) {
			if !skip[g] {
				args = append(args, "--gpu", g+"="+o.Scenario.GPUs[g])
			}
		}
		a.MustCLI(args...)
	}
	scen := filepath.Join(base, "scenario.yaml")
	if err := os.WriteFile(scen, []byte(o.Scenario.YAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testutil.SimAgent{Node: n.ID, Provider: n.Provider, Scenario: scen, Speed: o.Speed,
		Rules:     []string{"{user: acme, tenant: acme}", "{user: globex, tenant: globex}"},
		Authority: a.URL, Timeout: "5s", AuthorityExtra: o.Authority, RecordsFile: n.RecordsFile,
		StateDir: n.Dir, Extra: "log: {level: debug, format: json}\n" + o.Extra}.YAML()
	if err := os.WriteFile(n.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// Since is the service date the registration attests: before any window
// the simulation can produce (it places the scenario so that it ends about
// when its fast replay does).
func (n *Node) Since() string {
	return time.Now().UTC().Add(-n.Scenario.Duration - time.Hour).Truncate(time.Second).Format(time.RFC3339)
}

// SetAuthority points the node's config at url (after an authority restart
// on a new port).
func (n *Node) SetAuthority(oldURL, newURL string) {
	n.t.Helper()
	b, err := os.ReadFile(n.Config)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(n.Config, []byte(strings.Replace(string(b), oldURL, newURL, 1)), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// Start runs `gpumeter run` and waits until it meters.
func (n *Node) Start() *Proc {
	n.t.Helper()
	n.Agent = start(n.t, "gpumeter", bin.gpumeter, "run", "--config", n.Config)
	line := n.Agent.WaitLog("gpumeter running", time.Minute)
	var l struct{ Listen string }
	if err := json.Unmarshal([]byte(line), &l); err == nil && l.Listen != "" {
		n.MetricsURL = "http://" + l.Listen + "/metrics"
	}
	return n.Agent
}

// Metric is the sum of every series of the metric name (any labels) on the
// running agent's /metrics; ok is false when it has none.
func (n *Node) Metric(name string) (sum float64, ok bool) {
	n.t.Helper()
	if n.MetricsURL == "" {
		n.t.Fatalf("no /metrics address in the agent's start line:\n%s", n.Agent.Tail(10))
	}
	resp, err := http.Get(n.MetricsURL)
	if err != nil {
		n.t.Fatalf("GET %s: %v", n.MetricsURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		n.t.Fatalf("GET %s: %d %v", n.MetricsURL, resp.StatusCode, err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		series, value, found := strings.Cut(l, " ")
		if !found || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			n.t.Fatalf("%s: %q: %v", n.MetricsURL, l, err)
		}
		sum, ok = sum+v, true
	}
	return sum, ok
}

// End is the simulated timeline's end (from sim-anchor.json, written at
// the first start).
func (n *Node) End() time.Time {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "sim-anchor.json"))
	if err != nil {
		n.t.Fatal(err)
	}
	var a struct{ Start time.Time }
	if err := json.Unmarshal(b, &a); err != nil {
		n.t.Fatal(err)
	}
	return a.Start.Add(n.Scenario.Duration)
}

// Metered is every usage, idle and gap record the agent closed, from its
// records file (inventory records are not usage and are left out).
func (n *Node) Metered() []protocol.Record {
	n.t.Helper()
	if _, err := os.Stat(n.RecordsFile); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var out []protocol.Record
	for _, r := range testutil.ReadRecords(n.t, n.RecordsFile) {
		if r.Kind != protocol.KindInventory {
			out = append(out, r)
		}
	}
	return out
}

// WaitFor polls cond (every 50 ms) until it holds, failing after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling another process's state
	}
}

// WaitDelivered waits until the authority holds records of node up to
// the scenario's end.
func (a *Authority) WaitDelivered(n *Node, d time.Duration) {
	a.t.Helper()
	end := n.End().UnixMilli()
	WaitFor(a.t, d, "the authority to hold records up to the scenario's end", func() bool {
		for _, r := range a.Stored(n.ID) {
			if r.EndMS >= end {
				return true
			}
		}
		return false
	})
}

// usageKey is what a record is about, for comparing the two sides.
type usageKey struct {
	unit, kind, tenant, gap string
	start, end              int64
}

// SameUsage checks that the authority stored exactly the records the agent
// metered up to end (by what each is about, and its milliseconds): none
// lost, none doubled. Records the agent metered after end (it keeps
// metering idle time) may or may not have been delivered yet and are
// ignored on both sides. except, when not nil, drops records from the
// comparison (e.g. spool_lost gaps only the authority's side has).
func SameUsage(t testing.TB, metered []protocol.Record, stored []StoredRecord, end time.Time, except func(unit, kind, gap string) bool) {
	t.Helper()
	e := end.UnixMilli()
	want := map[usageKey]int64{}
	for _, r := range metered {
		k := usageKey{r.GPUUUID, string(r.Kind), r.Tenant, r.GapReason, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()}
		if k.end > e || (except != nil && except(k.unit, k.kind, k.gap)) {
			continue
		}
		want[k] += r.GPUMillis
	}
	got := map[usageKey]int64{}
	ids := map[string]bool{}
	for _, r := range stored {
		if r.Kind == string(protocol.KindInventory) {
			continue
		}
		if ids[r.ID] {
			t.Errorf("record %s stored twice", r.ID)
		}
		ids[r.ID] = true
		k := usageKey{r.Unit, r.Kind, r.Tenant, r.Gap, r.StartMS, r.EndMS}
		if k.end > e || (except != nil && except(k.unit, k.kind, k.gap)) {
			continue
		}
		got[k] += r.GPUMillis
	}
	var diffs []string
	for k, ms := range want {
		if got[k] != ms {
			diffs = append(diffs, fmt.Sprintf("%v: metered %d ms, stored %d ms", k, ms, got[k]))
		}
	}
	for k, ms := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%v: stored %d ms, never metered", k, ms))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("... %d more", len(diffs)-20))
		}
		t.Fatalf("the authority does not hold exactly what was metered (%d metered, %d stored keys):\n%s",
			len(want), len(got), strings.Join(diffs, "\n"))
	}
	if len(want) == 0 {
		t.Fatal("nothing metered before the end: the comparison proves nothing")
	}
}

// UsageMillis sums stored usage per tenant.
func UsageMillis(stored []StoredRecord) map[string]int64 {
	m := map[string]int64{}
	for _, r := range stored {
		if r.Kind == string(protocol.KindUsage) {
			m[r.Tenant] += r.GPUMillis
		}
	}
	return m
}
