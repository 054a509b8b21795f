package server

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
