package agent

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite golden files")

// volatile metrics depend on the machine or the moment, not on what was
// metered; the golden file leaves them out.
func volatile(name string) bool {
	for _, p := range []string{"go_", "process_", "gpumeter_cycle_duration", "gpumeter_collector_duration", "gpumeter_build_info"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// TestMetricsGolden meters the first 45 minutes of the demo scenario in
// virtual time and compares the whole exposition (minus machine-dependent
// families) with testdata/metrics.golden. Run with -update to rewrite it
// after an intended change, and review the diff.
func TestMetricsGolden(t *testing.T) {
	p, sc, vclock, _ := demoPipeline(t, "golden")
	m := NewMetrics("golden")
	m.Watch(p.Meter)
	p.Metrics = m
	for ts := sc.Start; ts.Before(sc.Start.Add(45 * time.Minute)); ts = ts.Add(time.Second) {
		vclock.Set(ts)
		if _, err := p.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, f := range fams {
		if volatile(f.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&got, f); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("/metrics differs from %s (run with -update and review the diff):\n%s", golden, got.String())
	}
}

// TestBuildInfo: gpumeter_build_info is 1, labelled with the version the
// agent stamps on its records and the Go version it was built with.
func TestBuildInfo(t *testing.T) {
	fams, err := NewMetrics("v9.9.9").Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "gpumeter_build_info" {
			continue
		}
		if len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("gpumeter_build_info: %v, want one series of value 1", f.GetMetric())
		}
		got := map[string]string{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range map[string]string{"version": "v9.9.9", "goversion": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH} {
			if got[k] != v {
				t.Errorf("gpumeter_build_info{%s=%q}, want %q (all: %v)", k, got[k], v, got)
			}
		}
		if _, ok := got["revision"]; !ok {
			t.Errorf("gpumeter_build_info lacks revision: %v", got)
		}
		return
	}
	t.Fatal("no gpumeter_build_info among the metrics")
}
