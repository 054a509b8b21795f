package prometheus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/testutil"
)

const (
	demoScenario = "../../configs/scenarios/demo.yaml"
	goldenFile   = "../../agent/testdata/metrics.golden"
	// speed replays the demo's 2 hours in 24 s: long enough for Prometheus
	// to start and see the tenants' processes, short enough for CI.
	speed = 300
)

// alwaysThere are series Prometheus makes itself.
var alwaysThere = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// TestEndToEnd runs the real agent binary on the simulated demo node,
// reporting to a real voucher authority, and a real Prometheus server
// scraping it every second with alerts.yml loaded. It checks the agent's
// /metrics with promtool, that every expression in the rules and the
// dashboard names a metric the agent exports, that Prometheus's
// per-tenant GPU-seconds equal the agent's and the scenario's, that every
// rule evaluates without error and none fires on the healthy node, and
// that every dashboard query runs and returns data.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent and Prometheus")
	}
	goBin := testenv.Tool(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "gpumeter")
	if out, err := exec.Command(goBin, "build", "-o", bin, "../../cmd/gpumeter").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gpumeter: %v\n%s", err, out)
	}
	sc, err := scenario.Load(demoScenario)
	if err != nil {
		t.Fatal(err)
	}
	want := scenario.Expected(sc) // tenant → GPU-milliseconds

	agent, agentAddr := startAgent(t, dir, bin, sc)
	procs := []*proc{agent}
	var prom *promServer
	if promBin, err := exec.LookPath("prometheus"); err == nil {
		prom = startPrometheus(t, dir, promBin, agentAddr)
		procs = append(procs, prom.proc)
	}
	metricsURL := "http://" + agentAddr + "/metrics"

	var exposition []byte
	poll(t, "every demo tenant on the agent's /metrics", 30*time.Second, procs, func() error {
		b, fams, err := scrape(metricsURL)
		if err != nil {
			return err
		}
		if err := hasTenants(tenantSeconds(fams), want); err != nil {
			return err
		}
		exposition = b
		return nil
	})

	t.Run("promtool check metrics", func(t *testing.T) {
		promtool := testenv.Tool(t, "promtool")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics on the agent's /metrics: %v\n%s", err, out)
		}
	})

	t.Run("expressions name exported metrics", func(t *testing.T) {
		golden, err := os.ReadFile(goldenFile)
		if err != nil {
			t.Fatal(err)
		}
		exported := map[string]dto.MetricType{}
		for _, b := range [][]byte{golden, exposition} {
			fams, err := parseExposition(b)
			if err != nil {
				t.Fatal(err)
			}
			for name, f := range fams {
				exported[name] = f.GetType()
			}
		}
		check := func(where, expr string) {
			sels, err := selectors(expr)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				return
			}
			for _, s := range sels {
				if !isExported(s.name, exported) {
					t.Errorf("%s: %q names %s, which the agent does not export", where, expr, s.name)
				}
			}
		}
		for _, r := range loadRules(t) {
			check(rulesFile+" "+r.Alert, r.Expr)
		}
		for _, e := range loadDashboard(t).exprs(t) {
			check(dashboardFile, e)
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		if prom == nil {
			testenv.Tool(t, "prometheus") // skips, or fails under GPUMETER_TEST_REQUIRE=1
			t.Fatal("prometheus is in PATH now but was not at the start")
		}
		checkDashboardQueries(t, prom, procs)

		// Once the scenario is over the agent's counters stop; Prometheus's
		// latest scrape must then hold exactly the agent's values, each
		// within 5% of the scenario's.
		var got map[string]float64
		poll(t, "Prometheus's per-tenant GPU-seconds equal to the agent's", 60*time.Second, procs, func() error {
			_, fams, err := scrape(metricsURL)
			if err != nil {
				return err
			}
			agentVals := tenantSeconds(fams)
			res, err := prom.query(`sum by (tenant) (gpumeter_tenant_gpu_seconds_total{job="gpumeter"})`)
			if err != nil {
				return err
			}
			promVals := map[string]float64{}
			for _, s := range res {
				promVals[s.labels["tenant"]] = s.value
			}
			if err := hasTenants(promVals, want); err != nil {
				return err
			}
			if len(promVals) != len(agentVals) {
				return fmt.Errorf("tenants: Prometheus %v, agent %v", promVals, agentVals)
			}
			for tenant, a := range agentVals {
				if p := promVals[tenant]; math.Abs(p-a) > 1e-9*math.Max(1, a) {
					return fmt.Errorf("tenant %s: Prometheus %v GPU-seconds, agent %v", tenant, p, a)
				}
			}
			got = promVals
			// Equal mid-run too, when a scrape follows the agent's last
			// poll: keep polling until the scenario's jobs are over.
			for tenant, ms := range want {
				if exp := float64(ms) / 1000; math.Abs(got[tenant]-exp) > 0.05*exp {
					return fmt.Errorf("tenant %s: %v GPU-seconds so far, the scenario has %v", tenant, got[tenant], exp)
				}
			}
			return nil
		})
		for tenant, ms := range want {
			exp := float64(ms) / 1000
			// Metered in real time at 300x on a busy machine, a job's start
			// and end land within some simulated seconds of the scenario's
			// (20 s seen); a unit mix-up (ms for s) or another tenant's
			// time is far outside 5%.
			if g := got[tenant]; g <= 0 || math.Abs(g-exp) > 0.05*exp {
				t.Errorf("tenant %s: %v GPU-seconds in Prometheus, the scenario has %v (5%% allowed)", tenant, g, exp)
			}
		}
		t.Logf("per-tenant GPU-seconds in Prometheus: %v (scenario: %v ms)", got, want)

		checkRulesHealthy(t, prom, procs, len(loadRules(t)))
	})
}

// startAgent registers a node for the scenario's GPUs with a fresh
// authority and runs the agent binary on it; it returns the agent and the
// address it serves /metrics on.
func startAgent(t *testing.T, dir, bin string, sc *scenario.Scenario) (*proc, string) {
	t.Helper()
	state, pub := testutil.NodeState(t, dir)
	var gpus []string
	for _, g := range sc.GPUs {
		gpus = append(gpus, g.UUID)
	}
	auth := authoritytest.New(t, authoritytest.Options{
		Nodes: []authoritytest.Node{{ID: "e2e-node", Provider: "e2e-cloud", PublicKey: pub, GPUs: gpus}},
	})
	scen, err := filepath.Abs(demoScenario)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.yaml")
	// max_hold 1m: at 300x a scheduling hiccup of 10 ms is 3 simulated
	// seconds, which must not become a no_sample gap (as in demo/run).
	body := fmt.Sprintf(`node: {id: e2e-node, provider: e2e-cloud}
devices: {source: simulated, scenario: %q, speed: %d}
metering: {poll_interval: 1s, window: 1m, max_hold: 1m}
attribution:
  # No kubelet here: the namespace rule matches nothing, and the agent
  # exports gpumeter_kubelet_up 0, which an alert rule names.
  kubelet: {socket: %q}
  rules:
    - {name: research-namespaces, namespace: 'research-*', tenant: research}
    - {name: acme-by-user, user: acme, tenant: acme}
    - {name: globex-pods, cgroup: kubernetes, tenant: globex}
    - {name: tenant-slices, cgroup_pattern: '/tenant-(?P<tenant>[a-z0-9-]+)\.slice/', tenant: '${tenant}'}
http: {listen: "127.0.0.1:0"}
authority: {url: %q, timeout: 5s}
log: {level: info, format: json}
state_dir: %q
`, scen, speed, filepath.Join(dir, "no-kubelet.sock"), auth.URL, state)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Dir = dir
	p := startProc(t, "gpumeter", cmd)
	var addr string
	poll(t, "the agent's listen address in its log", 30*time.Second, []*proc{p}, func() error {
		for _, line := range strings.Split(p.out.String(), "\n") {
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "gpumeter running" && l.Listen != "" {
				addr = l.Listen
				return nil
			}
		}
		return fmt.Errorf("no \"gpumeter running\" line yet")
	})
	return p, addr
}

// scrape gets url's exposition and parses it.
func scrape(url string) ([]byte, map[string]*dto.MetricFamily, error) {
	b, err := get(url)
	if err != nil {
		return nil, nil, err
	}
	fams, err := parseExposition(b)
	return b, fams, err
}

func parseExposition(b []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// tenantSeconds sums gpumeter_tenant_gpu_seconds_total by tenant.
func tenantSeconds(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range fams["gpumeter_tenant_gpu_seconds_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "tenant" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// hasTenants is nil when every tenant of want has a value above 0 in got.
func hasTenants(got map[string]float64, want map[string]int64) error {
	for tenant := range want {
		if got[tenant] <= 0 {
			return fmt.Errorf("tenant %s has no GPU-seconds yet (%v)", tenant, got)
		}
	}
	return nil
}

// isExported: the family itself, a histogram's or summary's series, a
// series Prometheus makes.
func isExported(name string, exported map[string]dto.MetricType) bool {
	if _, ok := exported[name]; ok || alwaysThere[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch typ, ok := exported[base]; {
		case !ok:
		case typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case typ == dto.MetricType_SUMMARY && suffix != "_bucket":
			return true
		}
	}
	return false
}

// queryURL is the instant-query URL of expr.
func queryURL(base, expr string) string {
	return base + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
}

func parseValue(v []any) (float64, error) {
	if len(v) != 2 {
		return 0, fmt.Errorf("value %v is not [time, value]", v)
	}
	s, ok := v[1].(string)
	if !ok {
		return 0, fmt.Errorf("value %v: not a string", v[1])
	}
	return strconv.ParseFloat(s, 64)
}
