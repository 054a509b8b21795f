package agent_test

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

var demoGPUs = []string{"GPU-de30de30-0000-4000-8000-000000000000", "GPU-de30de30-0000-4000-8000-000000000001"}

// scrape reads the agent's /metrics and parses it into families by name.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	_, body := get(t, base+"/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metrics scrapes the agent and returns each sample's value by its
// exposition name (labels ignored: only label-less metrics are asked for).
func metrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	fams := scrape(t, base)
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestAuthorityOutageDrains: a simulated node (demo scenario, 600x)
// reports to a real authority that becomes unreachable for an hour of
// virtual time. The backlog waits in the spool, drains when the authority
// is back, and in the end the authority holds exactly the records the
// agent produced (its records file): nothing lost, nothing doubled.
func TestAuthorityOutageDrains(t *testing.T) {
	state, pub := nodeState(t)
	auth := authoritytest.New(t, authoritytest.Options{
		Nodes: []authoritytest.Node{{ID: "test-node", Provider: "test-cloud", PublicKey: pub, GPUs: demoGPUs}},
	})
	out := filepath.Join(t.TempDir(), "records.jsonl")
	scenario, _ := filepath.Abs("../configs/scenarios/demo.yaml")
	cfg := loadConfig(t, testutil.SimAgent{Node: "test-node", Provider: "test-cloud", Scenario: scenario,
		Rules: []string{
			"{user: acme, tenant: acme}",
			"{cgroup: kubernetes, tenant: globex}",
			`{cgroup_pattern: '/tenant-(?P<t>[a-z]+)\.slice/', tenant: '${t}'}`,
		},
		Authority: auth.URL, Timeout: "1s", RecordsFile: out, StateDir: state}.YAML())
	r := startDaemon(t, cfg)
	base := r.base

	poll(t, "first batches accepted", 30*time.Second, func() bool { return auth.Head(t, "test-node") > 0 })
	auth.SetDown(true)
	downAt := metrics(t, base)["gpumeter_last_cycle_timestamp_seconds"]
	poll(t, "an hour of virtual time with the authority down", 60*time.Second, func() bool {
		return metrics(t, base)["gpumeter_last_cycle_timestamp_seconds"] >= downAt+3600
	})
	during := metrics(t, base)
	backlog := during["gpumeter_spool_pending_records"] + during["gpumeter_report_sealed_sequence"] - during["gpumeter_report_acked_sequence"]
	if backlog == 0 || during["gpumeter_report_failed_attempts_total"] == 0 {
		t.Fatalf("no backlog or no failed attempt during the outage: %v", during)
	}
	headBefore := auth.Head(t, "test-node")
	auth.SetDown(false)
	back := time.Now()
	poll(t, "the backlog drained", 60*time.Second, func() bool {
		m := metrics(t, base)
		return m["gpumeter_spool_pending_records"] == 0 && m["gpumeter_spool_unacked_batches"] == 0 &&
			m["gpumeter_report_acked_sequence"] >= float64(headBefore)+backlog
	})
	drain := time.Since(back)
	drained := auth.Head(t, "test-node") - headBefore
	t.Logf("outage of 1h virtual: backlog %.0f records; %d records drained in %s (%.0f records/s, retry backoff included)",
		backlog, drained, drain.Round(time.Millisecond), float64(drained)/drain.Seconds())

	r.lint(t)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The authority holds exactly what the agent produced.
	recs := testutil.ReadRecords(t, out)
	want := map[string]int64{}
	for _, r := range recs {
		if r.Kind == protocol.KindUsage {
			want[r.Tenant] += r.GPUMillis
		}
	}
	if head := auth.Head(t, "test-node"); head != uint64(len(recs)) {
		t.Errorf("authority head %d, agent produced %d records", head, len(recs))
	}
	db, err := sql.Open("sqlite", "file:"+auth.DBPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT tenant, SUM(gpu_ms), COUNT(DISTINCT seq), COUNT(*) FROM records WHERE kind = 'usage' GROUP BY tenant`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int64{}
	for rows.Next() {
		var tenant string
		var ms, distinct, n int64
		if err := rows.Scan(&tenant, &ms, &distinct, &n); err != nil {
			t.Fatal(err)
		}
		if distinct != n {
			t.Errorf("tenant %s: %d records but %d distinct seqs", tenant, n, distinct)
		}
		got[tenant] = ms
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for tenant, ms := range want {
		if got[tenant] != ms {
			t.Errorf("tenant %s: authority has %d ms, the agent produced %d", tenant, got[tenant], ms)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tenants at the authority %v, produced %v", got, want)
	}
}

// TestFullSpoolHoldsRecordsInMemory: a spool capped below one window's
// records cannot take them even after merging; the agent keeps metering,
// holds them in memory and says so in /metrics.
func TestFullSpoolHoldsRecordsInMemory(t *testing.T) {
	cfg := simConfig(t, "")
	cfg.Spool.MaxBytes = 1
	r := startDaemon(t, cfg)
	base := r.base
	poll(t, "gpumeter_spool_full 1 with records held", 30*time.Second, func() bool {
		m := metrics(t, base)
		return m["gpumeter_spool_full"] == 1 && m["gpumeter_spool_held_records"] > 0
	})
	if m := metrics(t, base); m["gpumeter_spool_pending_records"] != 0 {
		t.Errorf("pending records %v in a spool that cannot hold one", m["gpumeter_spool_pending_records"])
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d: metering must go on while the spool is full", code)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// labelled scrapes the agent and returns the label set of each sample of
// family name (empty when absent), and its values.
func labelled(t *testing.T, base, name string) (labels []map[string]string, values []float64) {
	t.Helper()
	fams := scrape(t, base)
	for _, m := range fams[name].GetMetric() {
		ls := map[string]string{}
		for _, l := range m.GetLabel() {
			ls[l.GetName()] = l.GetValue()
		}
		labels = append(labels, ls)
		values = append(values, m.GetGauge().GetValue())
	}
	return labels, values
}

// TestUnregisteredKeyIsHeldNotDeadLettered: a node whose key the
// authority does not know yet (registered with another) reports to a real
// authority. Delivery is held (gpumeter_delivery_held 1, cause
// unauthorized: the signed head read is refused first), nothing is
// dead-lettered; once the operator registers the key,
// the held batch goes through, the metric clears, and the authority holds
// every record the agent produced.
func TestUnregisteredKeyIsHeldNotDeadLettered(t *testing.T) {
	state, pub := nodeState(t)
	other, err := signing.GenerateKeyFile(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	auth := authoritytest.New(t, authoritytest.Options{
		Nodes: []authoritytest.Node{{ID: "test-node", Provider: "test-cloud", PublicKey: other, GPUs: demoGPUs}},
	})
	out := filepath.Join(t.TempDir(), "records.jsonl")
	scenario, _ := filepath.Abs("../configs/scenarios/demo.yaml")
	cfg := loadConfig(t, testutil.SimAgent{Node: "test-node", Provider: "test-cloud", Scenario: scenario,
		Authority: auth.URL, Timeout: "1s", RecordsFile: out, StateDir: state}.YAML())
	r := startDaemon(t, cfg)

	poll(t, "delivery held", 30*time.Second, func() bool { return metrics(t, r.base)["gpumeter_delivery_held"] == 1 })
	if ls, _ := labelled(t, r.base, "gpumeter_delivery_held_info"); len(ls) != 1 || ls[0]["cause"] != "unauthorized" {
		t.Errorf("gpumeter_delivery_held_info %v, want one series with cause unauthorized (the signed head read is refused first)", ls)
	}
	ls, vs := labelled(t, r.base, "gpumeter_instance_info")
	if len(ls) != 1 || len(ls[0]["instance"]) != 16 || vs[0] != 1 {
		t.Errorf("gpumeter_instance_info %v %v, want one series with a 16-digit instance", ls, vs)
	}
	if m := metrics(t, r.base); m["gpumeter_spool_dead_letter_batches"] != 0 || m["gpumeter_report_blocked"] != 0 {
		t.Errorf("held delivery dead-lettered or blocked: %v", m)
	}
	if _, ok := metrics(t, r.base)["gpumeter_authority_clock_offset_seconds"]; !ok {
		t.Error("no gpumeter_authority_clock_offset_seconds after the authority answered")
	}

	// The operator registers the key; the next attempt goes through.
	if _, err := auth.Store.AddKey(context.Background(), "test-node", pub, authoritytest.DefaultSince, time.Now()); err != nil {
		t.Fatal(err)
	}
	agent.WakeReporter(r.d)
	poll(t, "the held usage delivered", 30*time.Second, func() bool {
		m := metrics(t, r.base)
		return m["gpumeter_delivery_held"] == 0 && m["gpumeter_report_acked_sequence"] > 0 && m["gpumeter_spool_unacked_batches"] == 0
	})
	if ls, _ := labelled(t, r.base, "gpumeter_delivery_held_info"); len(ls) != 0 {
		t.Errorf("gpumeter_delivery_held_info still %v after delivery", ls)
	}
	r.lint(t)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := testutil.ReadRecords(t, out)
	if head := auth.Head(t, "test-node"); head != uint64(len(recs)) {
		t.Errorf("authority head %d, the agent produced %d records", head, len(recs))
	}
}
