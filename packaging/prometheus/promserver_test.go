package prometheus

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// promServer is a real Prometheus (the Debian package's) scraping the
// agent every second, with alerts.yml loaded.
type promServer struct {
	proc *proc
	base string // http://127.0.0.1:port
}

func startPrometheus(t *testing.T, dir, bin, target string) *promServer {
	t.Helper()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(dir, "prometheus")
	if err := os.Mkdir(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(pdir, "prometheus.yml")
	body := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: gpumeter
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(pdir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = pdir
	s := &promServer{proc: startProc(t, "prometheus", cmd), base: "http://" + addr}
	poll(t, "Prometheus ready", 30*time.Second, []*proc{s.proc}, func() error {
		_, err := get(s.base + "/-/ready")
		return err
	})
	return s
}

type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant query; a PromQL error is an error.
func (s *promServer) query(expr string) ([]sample, error) {
	b, err := get(queryURL(s.base, expr))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string
		Error  string
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, r.Error)
	}
	switch r.Data.ResultType {
	case "scalar":
		var v []any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parseValue(v)
		return []sample{{value: f}}, err
	case "vector":
		var vec []struct {
			Metric map[string]string
			Value  []any
		}
		if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]sample, 0, len(vec))
		for _, e := range vec {
			f, err := parseValue(e.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", expr, err)
			}
			out = append(out, sample{labels: e.Metric, value: f})
		}
		return out, nil
	}
	return nil, fmt.Errorf("query %q: result type %q", expr, r.Data.ResultType)
}

// grafanaVars stand in for what Grafana puts in a query: all jobs' and
// nodes' series, and windows that suit a 1 s scrape interval.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5s",
	"$__interval", "1s",
	"$__range", "1m",
	"$job", "gpumeter",
	"$instance", ".*",
	"$tenant", ".*",
)

// checkDashboardQueries runs every dashboard query, its variables filled
// in, against Prometheus until each has returned data at least once: none
// may fail or stay empty.
func checkDashboardQueries(t *testing.T, s *promServer, procs []*proc) {
	t.Helper()
	exprs := map[string]string{} // with variables → as in the dashboard
	for _, e := range loadDashboard(t).exprs(t) {
		q := grafanaVars.Replace(e)
		if strings.Contains(q, "$") {
			t.Errorf("%s: %q uses a variable this test does not know", dashboardFile, e)
			continue
		}
		exprs[q] = e
	}
	empty := map[string]bool{}
	for q := range exprs {
		empty[q] = true
	}
	poll(t, "data for every dashboard query", 30*time.Second, procs, func() error {
		for q, e := range exprs {
			res, err := s.query(q)
			if err != nil {
				t.Fatalf("%s: %q: %v", dashboardFile, e, err) // PromQL errors do not go away
			}
			if len(res) > 0 {
				delete(empty, q)
			}
		}
		if len(empty) > 0 {
			return fmt.Errorf("no data yet for %q", slices.Sorted(maps.Keys(empty)))
		}
		return nil
	})
}

// checkRulesHealthy waits until Prometheus has evaluated every rule of
// alerts.yml without error, then checks that none fires on the healthy
// node.
func checkRulesHealthy(t *testing.T, s *promServer, procs []*proc, nrules int) {
	t.Helper()
	poll(t, "every rule evaluated without error", 30*time.Second, procs, func() error {
		b, err := get(s.base + "/api/v1/rules")
		if err != nil {
			return err
		}
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		n := 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				n++
				switch rule.Health {
				case "ok":
				case "err":
					t.Fatalf("rule %s fails in Prometheus: %s", rule.Name, rule.LastError)
				default:
					return fmt.Errorf("rule %s: health %q", rule.Name, rule.Health)
				}
			}
		}
		if n != nrules {
			return fmt.Errorf("Prometheus has %d rules, %s has %d", n, rulesFile, nrules)
		}
		return nil
	})
	b, err := get(s.base + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	for _, al := range a.Data.Alerts {
		if al.State == "firing" {
			t.Errorf("alert %s fires on the healthy demo node: %v", al.Labels["alertname"], al.Labels)
		}
	}
}
