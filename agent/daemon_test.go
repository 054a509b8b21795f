package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/protocol"
)

// simConfig is a simulated node running the demo scenario 600x faster
// than real time, its HTTP endpoint on a free port.
func simConfig(t *testing.T, out string) *config.Config {
	t.Helper()
	scenario, err := filepath.Abs("../configs/scenarios/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`node: {id: test-node, provider: test-cloud}
devices: {source: simulated, scenario: %q, speed: 600}
metering: {poll_interval: 1s, window: 1m}
attribution:
  rules:
    - {name: acme, user: acme, tenant: acme}
    - {name: k8s, cgroup: kubernetes, tenant: globex}
    - {name: slices, cgroup_pattern: '/tenant-(?P<t>[a-z]+)\.slice/', tenant: '${t}'}
http: {listen: "127.0.0.1:0"}
output: {records_file: %q}
state_dir: %q
`, scenario, out, t.TempDir())
	return loadConfig(t, body)
}

// nodeState makes a state directory holding a fresh node.key and answers
// it with the key's public half, for registering the node.
func nodeState(t *testing.T) (string, ed25519.PublicKey) {
	t.Helper()
	return testutil.NodeState(t, t.TempDir())
}

// loadConfig writes an agent configuration to a 0600 file and loads it the
// way the daemon does, so tests exercise the real parser.
func loadConfig(t *testing.T, body string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// poll calls f until it returns true or the deadline passes.
func poll(t *testing.T, what string, deadline time.Duration, f func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !f() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", deadline, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a wait for an event
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// running is a daemon started in the background for a test.
type running struct {
	d      *agent.Daemon
	base   string // http://host:port of its endpoint
	cancel context.CancelFunc
	done   chan error
}

// startDaemon builds the daemon from cfg and runs it until stop.
func startDaemon(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	return startDaemonWith(t, cfg, slog.New(slog.DiscardHandler))
}

// startDaemonWith is startDaemon with a logger and options.
func startDaemonWith(t *testing.T, cfg *config.Config, log *slog.Logger, opts ...agent.Option) *running {
	t.Helper()
	d, err := agent.New(cfg, log, "test", opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, base: "http://" + d.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	return r
}

// lint fails the test for every metric the Prometheus linter objects to.
func (r *running) lint(t *testing.T) {
	t.Helper()
	problems, err := promtestutil.GatherAndLint(r.d.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// stop cancels the daemon (as SIGTERM does) and returns Run's error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

func TestDaemonMetersServesMetricsAndClosesTheWindowOnStop(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startDaemon(t, simConfig(t, out))
	base := r.base

	// Usage shows up per tenant: the demo starts globex at 0:00 on GPU 1
	// and acme at 0:05 on GPU 0.
	var body string
	poll(t, "per-tenant GPU-seconds for acme and globex", 20*time.Second, func() bool {
		_, body = get(t, base+"/metrics")
		return strings.Contains(body, `gpumeter_tenant_gpu_seconds_total{gpu_uuid=`) &&
			strings.Contains(body, `tenant="acme"`) && strings.Contains(body, `tenant="globex"`)
	})
	if code, b := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q, want 200", code, b)
	}
	// The exposition parses and follows the naming conventions.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for _, name := range []string{
		"gpumeter_tenant_gpu_seconds_total", "gpumeter_unit_seconds_total", "gpumeter_gpu_up",
		"gpumeter_gpu_utilization_ratio", "gpumeter_gpu_memory_used_bytes", "gpumeter_gpu_power_watts",
		"gpumeter_gpu_energy_joules_total", "gpumeter_cycle_duration_seconds", "gpumeter_collector_success",
		"gpumeter_collector_errors_total", "gpumeter_build_info", "gpumeter_records_total",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	r.lint(t)

	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The records file holds whole windows and, last, the window closed at
	// stop: a partial one ending off the minute.
	recs := testutil.ReadRecords(t, out)
	if len(recs) == 0 {
		t.Fatal("no records written")
	}
	checkWindows(t, recs)
	last := recs[len(recs)-1]
	if last.WindowEnd.UnixMilli()%60000 == 0 {
		t.Errorf("last record ends on a window boundary (%s): the open window was not closed at stop", last.WindowEnd)
	}
	var usage int64
	for _, r := range recs {
		if r.Kind == protocol.KindUsage {
			usage += r.GPUMillis
		}
	}
	if usage == 0 {
		t.Error("no usage metered")
	}
}

func TestDaemonRefusesToStartOnBusyPort(t *testing.T) {
	r := startDaemon(t, simConfig(t, ""))
	defer r.stop(t)

	cfg2 := simConfig(t, "")
	cfg2.HTTP.Listen = r.d.Addr()
	if _, err := agent.New(cfg2, slog.New(slog.DiscardHandler), "test"); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("second daemon on %s: err = %v, want an http.listen error", r.d.Addr(), err)
	}
}

// TestDaemonReportsInventoryAtEveryStart: the agent's first record is its
// inventory, and a restarted agent reports it again at its first
// observation (it cannot know what changed while it was down), after
// everything the first run metered.
func TestDaemonReportsInventoryAtEveryStart(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	cfg := simConfig(t, out)
	// Counted on the file's whole lines: the daemon may be writing one.
	inventories := func() int {
		data, _ := os.ReadFile(out)
		whole := data[:bytes.LastIndexByte(data, '\n')+1]
		return bytes.Count(whole, []byte(`"kind":"inventory"`))
	}
	for run := 1; run <= 2; run++ {
		r := startDaemon(t, cfg)
		poll(t, fmt.Sprintf("run %d's inventory", run), 20*time.Second, func() bool { return inventories() == run })
		if err := r.stop(t); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
	recs := testutil.ReadRecords(t, out)
	if recs[0].Kind != protocol.KindInventory {
		t.Fatalf("first record is %s, want the inventory", recs[0].Kind)
	}
	var lastEnd time.Time
	for i, r := range recs {
		if r.Kind != protocol.KindInventory {
			lastEnd = r.WindowEnd
			continue
		}
		if i > 0 && r.WindowStart.Before(lastEnd) {
			t.Errorf("inventory at %s comes after a record ending %s", r.WindowStart, lastEnd)
		}
		var gpus []string
		for _, g := range r.Inventory.GPUs {
			if g.MIGEnabled || g.Model != "NVIDIA H100 80GB HBM3" {
				t.Errorf("inventory GPU %+v, want a whole H100", g)
			}
			gpus = append(gpus, g.UUID)
		}
		if fmt.Sprint(gpus) != fmt.Sprint(demoGPUs) || r.Inventory.Agent != "test" || r.Inventory.WindowMillis != 60_000 ||
			r.Inventory.MergeWindowMillis != time.Hour.Milliseconds() {
			t.Errorf("inventory %+v, want the demo's GPUs, build test, 1 min windows merged into 1 h", r.Inventory)
		}
	}
}

// logBuffer collects a daemon's JSON log lines.
type logBuffer struct{ testutil.SyncBuffer }

// logger writes JSON lines to l at level (nil: info).
func (l *logBuffer) logger(level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: level}))
}

// entries are the lines logged so far whose message starts with msg.
func (l *logBuffer) entries(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m, _ := e["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, e)
		}
	}
	return out
}

// rewrite replaces old by new in the config file, which must contain it.
func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
		t.Fatal(err)
	}
}

// metric is the value of an unlabelled gauge or counter, or a histogram's
// count.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// waitCycles waits until the daemon has completed n more metering cycles.
func waitCycles(t *testing.T, r *running, n float64) {
	t.Helper()
	start := metric(t, r.d.Registry(), "gpumeter_cycle_duration_seconds")
	poll(t, "metering cycles", 20*time.Second, func() bool {
		return metric(t, r.d.Registry(), "gpumeter_cycle_duration_seconds") >= start+n
	})
}

// TestReloadChangesARuleFromTheNextWindow runs the daemon on the demo
// scenario at 60x, renames acme's tenant in the config file while acme
// runs, and reloads. The window open at the reload keeps acme; from the
// next window on the GPU's time is acme-lab's, except the sample-and-hold
// moment before that window's first poll (under max_hold, 3s here; the
// exact handover is TestReloadedRulesTakeOverAtTheNextWindow's).
func TestReloadChangesARuleFromTheNextWindow(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	cfg := simConfig(t, out)
	// At 600x a busy machine's scheduling stall can make a whole window a
	// no_sample gap, with no usage left to check; at 60x it takes a
	// second's stall.
	rewrite(t, cfg.Path(), "speed: 600", "speed: 60")
	cfg, err := config.Load(cfg.Path())
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	r := startDaemonWith(t, cfg, logs.logger(nil))
	poll(t, "acme's usage", 20*time.Second, func() bool {
		_, body := get(t, r.base+"/metrics")
		return strings.Contains(body, `tenant="acme"`)
	})

	rewrite(t, cfg.Path(), "tenant: acme}", "tenant: acme-lab}")
	if err := r.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	done := logs.entries(t, "config reloaded")
	if len(done) != 1 || !strings.Contains(done[0]["changed"].(string), "attribution.rules") {
		t.Fatalf("log after the reload: %v, want one 'config reloaded' naming attribution.rules", done)
	}
	from, err := time.Parse(time.RFC3339, done[0]["next_window"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if from.UnixMilli()%time.Minute.Milliseconds() != 0 {
		t.Fatalf("next_window %s is not on a window boundary", from)
	}
	if got := metric(t, r.d.Registry(), "gpumeter_config_last_reload_successful"); got != 1 {
		t.Errorf("gpumeter_config_last_reload_successful = %v, want 1", got)
	}
	// Meter until two whole windows after the handover have closed.
	poll(t, "two windows after the reload", 20*time.Second, func() bool {
		return metric(t, r.d.Registry(), "gpumeter_last_cycle_timestamp_seconds") > float64(from.Add(3*time.Minute).Unix())
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	var acmeBefore, labNext, acmeNext, labAfter int64
	for _, rec := range testutil.ReadRecords(t, out) {
		if rec.Kind != protocol.KindUsage || (rec.Tenant != "acme" && rec.Tenant != "acme-lab") {
			continue
		}
		switch {
		case !rec.WindowEnd.After(from): // the reload's window and those before
			if rec.Tenant == "acme-lab" {
				t.Errorf("window %s, before the handover at %s: %d ms metered to acme-lab", rec.WindowStart, from, rec.GPUMillis)
			}
			acmeBefore += rec.GPUMillis
		case rec.WindowStart.Equal(from):
			if rec.Tenant == "acme" {
				acmeNext += rec.GPUMillis
			} else {
				labNext += rec.GPUMillis
			}
		case rec.WindowEnd.Before(from.Add(3 * time.Minute)):
			if rec.Tenant == "acme" {
				t.Errorf("window %s, after the handover at %s: %d ms still metered to acme", rec.WindowStart, from, rec.GPUMillis)
			}
			labAfter += rec.GPUMillis
		}
	}
	if acmeBefore == 0 || labNext == 0 || labAfter == 0 {
		t.Errorf("acme before %d ms, acme-lab in the next window %d ms, after it %d ms: want all metered", acmeBefore, labNext, labAfter)
	}
	t.Logf("handover at %s: the next window metered acme-lab %d ms, acme %d ms (sample and hold before its first poll)", from, labNext, acmeNext)
	if acmeNext >= 3000 {
		t.Errorf("the next window still metered %d ms to acme: more than max_hold (3s) of sample and hold", acmeNext)
	}
}

// TestReloadRefusesANodeIDChange: the node id is the node's identity at the
// authority; changing it is refused with the file, line and field, and the
// agent keeps metering under its running id.
func TestReloadRefusesANodeIDChange(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	cfg := simConfig(t, out)
	var logs logBuffer
	r := startDaemonWith(t, cfg, logs.logger(nil))
	waitCycles(t, r, 1)
	okAt := metric(t, r.d.Registry(), "gpumeter_config_last_reload_success_timestamp_seconds")

	rewrite(t, cfg.Path(), "id: test-node", "id: other-node")
	err := r.d.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), cfg.Path()+":1: node.id") || !strings.Contains(err.Error(), "other-node") {
		t.Fatalf("Reload: %v, want a refusal naming %s:1: node.id", err, cfg.Path())
	}
	refused := logs.entries(t, "config reload refused")
	if len(refused) != 1 || !strings.Contains(refused[0]["changed"].(string), "node.id") {
		t.Errorf("log: %v, want one refusal line naming node.id", refused)
	}
	if got := metric(t, r.d.Registry(), "gpumeter_config_last_reload_successful"); got != 0 {
		t.Errorf("gpumeter_config_last_reload_successful = %v, want 0", got)
	}
	if got := metric(t, r.d.Registry(), "gpumeter_config_last_reload_success_timestamp_seconds"); got != okAt {
		t.Errorf("last success timestamp moved from %v to %v on a refused reload", okAt, got)
	}

	// Still metering: windows keep closing, /healthz is fine.
	closed := metric(t, r.d.Registry(), "gpumeter_last_cycle_timestamp_seconds")
	poll(t, "windows closing after the refusal", 20*time.Second, func() bool {
		return metric(t, r.d.Registry(), "gpumeter_last_cycle_timestamp_seconds") > closed+120
	})
	if code, body := get(t, r.base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q after a refused reload", code, body)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	recs := testutil.ReadRecords(t, out)
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	for _, rec := range recs {
		if rec.Node != "test-node" {
			t.Fatalf("record of %s names node %q: the refused id was used", rec.WindowStart, rec.Node)
		}
	}
}

// TestReloadRefusesABrokenFile: a file that does not parse is refused with
// its line, the agent goes on, and the next good file is applied.
func TestReloadRefusesABrokenFile(t *testing.T) {
	cfg := simConfig(t, "")
	var logs logBuffer
	r := startDaemonWith(t, cfg, logs.logger(nil))
	defer r.stop(t)
	waitCycles(t, r, 1)
	good, err := os.ReadFile(cfg.Path())
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(cfg.Path(), append(good, "metering: [\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	err = r.d.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), cfg.Path()+":") {
		t.Fatalf("Reload of a broken file: %v, want an error naming %s and the line", err, cfg.Path())
	}
	if got := logs.entries(t, "config reload refused"); len(got) != 1 || !strings.Contains(got[0]["err"].(string), cfg.Path()+":") {
		t.Errorf("log: %v, want one refusal with the file and line", got)
	}
	if got := metric(t, r.d.Registry(), "gpumeter_config_last_reload_successful"); got != 0 {
		t.Errorf("gpumeter_config_last_reload_successful = %v after a broken file, want 0", got)
	}
	waitCycles(t, r, 3)

	if err := os.WriteFile(cfg.Path(), good, 0o600); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := r.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload of the repaired file: %v", err)
	}
	if got := metric(t, r.d.Registry(), "gpumeter_config_last_reload_successful"); got != 1 {
		t.Errorf("gpumeter_config_last_reload_successful = %v after a good file, want 1", got)
	}
	if got := metric(t, r.d.Registry(), "gpumeter_config_last_reload_success_timestamp_seconds"); got < float64(before.Unix()) {
		t.Errorf("last success timestamp %v, want at least %d", got, before.Unix())
	}
}

// TestReloadLogLevelAndPollInterval: log.level applies at once; a new
// poll_interval applies from the next window, and only with the meter's
// max_hold unchanged (its default follows poll_interval).
func TestReloadLogLevelAndPollInterval(t *testing.T) {
	cfg := simConfig(t, "")
	var logs logBuffer
	level := new(slog.LevelVar)
	r := startDaemonWith(t, cfg, logs.logger(level), agent.WithLogLevel(level))
	defer r.stop(t)
	waitCycles(t, r, 1)

	rewrite(t, cfg.Path(), "poll_interval: 1s, window: 1m", "poll_interval: 2s, window: 1m")
	err := r.d.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metering.max_hold (3s → 6s)") || !strings.Contains(err.Error(), "set max_hold") {
		t.Fatalf("Reload with a new poll_interval and the default max_hold: %v, want a refusal naming metering.max_hold with advice", err)
	}

	rewrite(t, cfg.Path(), "poll_interval: 2s, window: 1m", "poll_interval: 2s, window: 1m, max_hold: 3s")
	if err := os.WriteFile(cfg.Path(), append(mustRead(t, cfg.Path()), "log: {level: debug}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %s after reloading log.level: debug", level.Level())
	}
	poll(t, "the new poll interval to take over", 20*time.Second, func() bool {
		return len(logs.entries(t, "reloaded poll interval in effect")) == 1
	})
	if got := logs.entries(t, "reloaded poll interval in effect")[0]["poll_interval"]; got != float64(2*time.Second) {
		t.Errorf("poll interval in effect: %v, want 2s", got)
	}
	waitCycles(t, r, 3)
	if code, body := get(t, r.base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q with the new poll interval", code, body)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
