package agent_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
)

// labelled scrapes the agent and returns the label set of each sample of
// family name (empty when absent), and its values.
func labelled(t *testing.T, base, name string) (labels []map[string]string, values []float64) {
	t.Helper()
	_, body := get(t, base+"/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
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
