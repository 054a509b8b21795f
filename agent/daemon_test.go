package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
