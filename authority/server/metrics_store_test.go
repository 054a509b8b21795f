package server

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/gpumeter/gpumeter/authority/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenHealth is a store with two held reviews of 1234 fen and one
// rejected; node-a delivering, declaring 1-minute windows, one of its GPUs
// behind and one never covered; node-b forked and silent.
var goldenHealth = func() store.Health {
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	return store.Health{
		HeldFen:    1234,
		OldestHeld: at.Add(-26 * time.Hour),
		Reviews:    map[string]int64{"held": 2, "approved": 0, "rejected": 1},
		Nodes: []store.NodeHealth{
			{ID: "node-a", LastBatch: at.Add(1500 * time.Millisecond), Window: time.Minute, CoveredUntil: at,
				GPUs: []store.GPUHealth{
					{UUID: "GPU-aaaaaaaa-0000-0000-0000-000000000001", CoveredUntil: at},
					{UUID: "GPU-aaaaaaaa-0000-0000-0000-000000000002", CoveredUntil: at.Add(-30 * time.Minute)},
					{UUID: "GPU-aaaaaaaa-0000-0000-0000-000000000003"},
				}},
			{ID: "node-b", Forked: true, GPUs: []store.GPUHealth{{UUID: "GPU-bbbbbbbb-0000-0000-0000-000000000001"}}},
		},
	}
}()

// exposition is the authority's gpumeter_authority_* families with the
// store read as read returns, minus the read's duration (the moment's).
func exposition(t *testing.T, read func(context.Context) (store.Health, error)) string {
	t.Helper()
	m := newMetrics()
	m.reg.MustRegister(newStoreCollector(read, slog.New(slog.DiscardHandler)))
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "gpumeter_authority_") || f.GetName() == "gpumeter_authority_collector_duration_seconds" {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestMetricsGolden compares the authority's whole exposition (its own
// families) with testdata/metrics.golden, which packaging/prometheus
// checks the authority's alert rules against. Run with -update to
// rewrite it after an intended change, and review the diff.
func TestMetricsGolden(t *testing.T) {
	got := exposition(t, func(context.Context) (store.Health, error) { return goldenHealth, nil })
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("/metrics differs from %s (run with -update and review the diff):\n%s", golden, got)
	}
}

// TestStoreCollectorFailure: a failed read is success 0 and one more
// error, and none of the store's series; the scrape itself succeeds.
func TestStoreCollectorFailure(t *testing.T) {
	got := exposition(t, func(context.Context) (store.Health, error) { return store.Health{}, errors.New("database is locked") })
	for _, want := range []string{`gpumeter_authority_collector_success{collector="store"} 0`,
		`gpumeter_authority_collector_errors_total{collector="store"} 1`} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	for _, absent := range []string{"gpumeter_authority_held_subsidy_fen", "gpumeter_authority_node_forked", "gpumeter_authority_reviews"} {
		if strings.Contains(got, absent+"{") || strings.Contains(got, absent+" ") {
			t.Errorf("a failed read still exports %s", absent)
		}
	}
}

// TestBuildInfo: voucher_authority_build_info is 1 with the labels
// node_exporter's has, the Go version among them.
func TestBuildInfo(t *testing.T) {
	fams, err := newMetrics().reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	assertBuildInfo(t, fams, "voucher_authority_build_info", map[string]string{"goversion": runtime.Version()})
}

// assertBuildInfo fails t unless fams hold name with value 1, want among
// its labels, and every label node_exporter's build_info has.
func assertBuildInfo(t *testing.T, fams []*dto.MetricFamily, name string, want map[string]string) {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		if len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("%s: %v, want one series of value 1", name, f.GetMetric())
		}
		got := map[string]string{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for _, l := range []string{"version", "revision", "branch", "goversion", "goos", "goarch", "tags"} {
			if _, ok := got[l]; !ok {
				t.Errorf("%s lacks label %s: %v", name, l, got)
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s{%s=%q}, want %q", name, k, got[k], v)
			}
		}
		return
	}
	t.Fatalf("no %s among the metrics", name)
}
