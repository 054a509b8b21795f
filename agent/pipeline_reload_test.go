package agent

import (
	"context"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

// meterDemo meters the demo scenario's first 20 minutes in virtual time,
// one poll a second, with the scenario's rules; at reloadAt (when not zero)
// it hands the pipeline rules that rename acme to acme-lab, from the next
// window on, as a reload does.
func meterDemo(t *testing.T, reloadAt time.Time) (recs []protocol.Record, from time.Time) {
	t.Helper()
	p, sc, vclock, hostRoot := demoPipeline(t, "n")
	renamed := attribution.Config{Rules: append([]attribution.Rule(nil), sc.Attribution.Rules...)}
	for i := range renamed.Rules {
		if renamed.Rules[i].Tenant == "acme" {
			renamed.Rules[i].Tenant = "acme-lab"
		}
	}
	next, err := attribution.New(renamed, hostRoot)
	if err != nil {
		t.Fatal(err)
	}
	for ts := sc.Start; ts.Before(sc.Start.Add(20 * time.Minute)); ts = ts.Add(time.Second) {
		vclock.Set(ts)
		if !reloadAt.IsZero() && ts.Equal(reloadAt) {
			from = p.SetAttributor(next, time.Minute)
		}
		out, err := p.Cycle(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, out...)
	}
	return recs, from
}

// TestReloadedRulesTakeOverAtTheNextWindow: rules handed over in the middle
// of a window leave that window's records exactly as they would have been,
// and meter the next window, whole, with the new rules.
func TestReloadedRulesTakeOverAtTheNextWindow(t *testing.T) {
	base, _ := meterDemo(t, time.Time{})
	start := base[0].WindowStart.Truncate(time.Minute)
	reloadAt := start.Add(10*time.Minute + 30*time.Second) // acme runs on GPU 0 from 0:05
	recs, from := meterDemo(t, reloadAt)
	if want := start.Add(11 * time.Minute); !from.Equal(want) {
		t.Fatalf("from = %s, want the next window's start %s", from, want)
	}

	// Every window before from is unchanged, the one the reload came in
	// included.
	var before, baseBefore []protocol.Record
	for _, r := range recs {
		if !r.WindowEnd.After(from) {
			before = append(before, r)
		}
	}
	for _, r := range base {
		if !r.WindowEnd.After(from) {
			baseBefore = append(baseBefore, r)
		}
	}
	if len(before) != len(baseBefore) {
		t.Fatalf("%d records before %s, %d without the reload", len(before), from, len(baseBefore))
	}
	for i := range before {
		if before[i] != baseBefore[i] {
			t.Errorf("record %d before the next window changed:\n got %+v\nwant %+v", i, before[i], baseBefore[i])
		}
	}

	// From the next window on, acme's GPU time is acme-lab's: the whole
	// window, to the millisecond.
	perWindow := map[time.Time]map[string]int64{}
	for _, r := range recs {
		if r.Kind != protocol.KindUsage || r.WindowStart.Before(from) {
			continue
		}
		if perWindow[r.WindowStart] == nil {
			perWindow[r.WindowStart] = map[string]int64{}
		}
		perWindow[r.WindowStart][r.Tenant] += r.GPUMillis
	}
	if len(perWindow) < 5 {
		t.Fatalf("only %d windows after the reload", len(perWindow))
	}
	for w, tenants := range perWindow {
		if ms := tenants["acme"]; ms != 0 {
			t.Errorf("window %s: %d ms still metered to acme", w, ms)
		}
		if ms := tenants["acme-lab"]; ms != time.Minute.Milliseconds() {
			t.Errorf("window %s: acme-lab has %d ms, want the whole window", w, ms)
		}
	}
	for _, r := range before {
		if r.Tenant == "acme-lab" {
			t.Errorf("record of window %s before the reload took effect names acme-lab", r.WindowStart)
		}
	}
}

// demoPipeline builds a pipeline over the demo scenario in virtual time: the
// simulated machine, the real collector and attributor, and a one-minute
// meter for node. It returns the scenario, its clock and its host root too.
func demoPipeline(t *testing.T, node string) (*Pipeline, *scenario.Scenario, *clock.Virtual, string) {
	t.Helper()
	p, sc, vclock, drv := scenarioPipeline(t, "../configs/scenarios/demo.yaml", node, 3*time.Second)
	return p, sc, vclock, drv.HostRoot()
}

// scenarioPipeline is demoPipeline over the scenario at path, its meter
// holding a sample for maxHold, and attribution with opts; it returns the
// scenario's driver.
func scenarioPipeline(t *testing.T, path, node string, maxHold time.Duration, opts ...attribution.Option) (*Pipeline, *scenario.Scenario, *clock.Virtual, *scenario.Driver) {
	t.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	drv, err := scenario.NewDriver(sc, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vclock := clock.NewVirtual(sc.Start)
	col := nvml.New(drv.Machine().Interface(), nvml.Options{Clock: vclock})
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = col.Close() })
	attr, err := attribution.New(sc.Attribution, drv.HostRoot(), append([]attribution.Option{attribution.WithSqueue(drv.Squeue())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	mt, err := meter.New(meter.Options{Node: node, Provider: node, Window: time.Minute, MaxHold: maxHold})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Collector: &drivenCollector{drv: drv, c: col, clock: vclock}, Attributor: attr, Meter: mt, Clock: vclock}
	return p, sc, vclock, drv
}
