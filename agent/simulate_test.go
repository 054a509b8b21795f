package agent_test

import (
	"cmp"
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/protocol"
)

// simulate runs a scenario through the whole node pipeline and returns
// every record it produced.
func simulate(t *testing.T, sc *scenario.Scenario) []protocol.Record {
	t.Helper()
	var recs []protocol.Record
	err := agent.Simulate(context.Background(), sc, agent.SimOptions{
		Node: "n1", Provider: "p1",
		Emit: func(r []protocol.Record) error { recs = append(recs, r...); return nil },
	})
	if err != nil {
		t.Fatalf("Simulate: %v", err)
	}
	return recs
}

// checkWindows asserts the accounting invariant: for every unit and every
// record window, usage + idle + gap = the window's length, exactly; and a
// unit's windows never overlap. Inventory records carry no GPU time and
// are left out (inventory_test.go checks them).
func checkWindows(t *testing.T, recs []protocol.Record) {
	t.Helper()
	type key struct {
		unit       string
		start, end int64
	}
	recs = usageRecords(recs)
	sum := map[key]int64{}
	for _, r := range recs {
		if r.GPUMillis <= 0 {
			t.Errorf("record %s: gpu_ms %d, want > 0", r.ID, r.GPUMillis)
		}
		if r.ID != r.ComputeID() {
			t.Errorf("record id %s != ComputeID %s", r.ID, r.ComputeID())
		}
		sum[key{r.GPUUUID, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()}] += r.GPUMillis
	}
	lastEnd := map[string]int64{}
	for k, ms := range sum {
		if ms != k.end-k.start {
			t.Errorf("unit %s window [%d,%d): usage+idle+gap = %d ms, want %d", k.unit, k.start, k.end, ms, k.end-k.start)
		}
	}
	for _, r := range recs { // records come in window order
		s := r.WindowStart.UnixMilli()
		if e, ok := lastEnd[r.GPUUUID]; ok && s < e && s != prevStart(recs, r) {
			t.Errorf("unit %s: window starting %d overlaps the previous one ending %d", r.GPUUUID, s, e)
		}
		lastEnd[r.GPUUUID] = r.WindowEnd.UnixMilli()
	}
}

// usageRecords is recs without inventory records.
func usageRecords(recs []protocol.Record) []protocol.Record {
	var out []protocol.Record
	for _, r := range recs {
		if r.Kind != protocol.KindInventory {
			out = append(out, r)
		}
	}
	return out
}

// prevStart lets records of the same window (several kinds and tenants)
// share a start without counting as an overlap.
func prevStart(recs []protocol.Record, r protocol.Record) int64 {
	for _, o := range recs {
		if o.GPUUUID == r.GPUUUID && o.WindowEnd.Equal(r.WindowEnd) {
			return o.WindowStart.UnixMilli()
		}
	}
	return -1
}

// tolerance is how far a tenant's metered time may be from the scenario's
// expectation: one poll interval for every change point off the poll ticks
// (job start or end, fault edge) on a unit where the tenant runs.
func tolerance(sc *scenario.Scenario, tenant string) time.Duration {
	offTick := func(d time.Duration) bool { return d%sc.PollInterval != 0 }
	units := map[scenario.Unit]bool{}
	gpus := map[int]bool{}
	for i := range sc.Jobs {
		if j := &sc.Jobs[i]; j.Tenant == tenant {
			units[j.Unit()] = true
			gpus[j.GPU] = true
		}
	}
	n := 0
	for i := range sc.Jobs {
		j := &sc.Jobs[i]
		if !units[j.Unit()] {
			continue
		}
		for _, edge := range []time.Duration{j.Start, j.End} {
			if offTick(edge) {
				n++
			}
		}
	}
	for _, f := range sc.Faults {
		if gpus[f.GPU] {
			for _, edge := range []time.Duration{f.LostAt, f.BackAt} {
				if offTick(edge) {
					n++
				}
			}
		}
	}
	return time.Duration(n) * sc.PollInterval
}

// TestShippedScenariosMeterWhatTheyImply runs every shipped scenario and
// compares each tenant's metered GPU-milliseconds with what the scenario
// implies, computed from its job intervals alone (scenario.Expected): exact
// when changes fall on poll ticks, within one poll interval per off-tick
// change otherwise.
func TestShippedScenariosMeterWhatTheyImply(t *testing.T) {
	files, err := filepath.Glob("../configs/scenarios/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("shipped scenarios: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if testing.Short() && sc(t, f).Duration > 6*time.Hour {
				t.Skip("long scenario in -short mode")
			}
			s := sc(t, f)
			recs := simulate(t, s)
			checkWindows(t, recs)

			got := map[string]int64{}
			var total int64
			for _, r := range recs {
				total += r.GPUMillis
				if r.Kind == protocol.KindUsage {
					got[r.Tenant] += r.GPUMillis
				}
			}
			want := scenario.Expected(s)
			for tenant, w := range want {
				tol := tolerance(s, tenant).Milliseconds()
				if d := got[tenant] - w; d < -tol || d > tol {
					t.Errorf("tenant %s: metered %d ms, scenario implies %d ms (tolerance %d ms)", tenant, got[tenant], w, tol)
				}
			}
			for tenant := range got {
				if _, ok := want[tenant]; !ok {
					t.Errorf("tenant %s metered %d ms but has no job in the scenario", tenant, got[tenant])
				}
			}
			// Every unit is accounted for over the whole of its span.
			if want := unitMillis(s, time.Minute); total != want {
				t.Errorf("all records sum to %d ms, want %d (%d units over their spans)", total, want, len(s.Units()))
			}
		})
	}
}

// unitMillis is what all records of a run of s sum to: each unit is
// metered in whole windows over its span (the run, unless a MIG
// reconfiguration bounds it), since a unit first seen mid-window is
// device_absent from the window's start and one gone mid-window is until
// the window's end; the run's first and last windows are cut at its start
// and end. A whole GPU is one unit in every layout that has MIG off.
func unitMillis(s *scenario.Scenario, window time.Duration) int64 {
	type key struct{ gpu, layout, mig int }
	w, start, end := window.Milliseconds(), s.Start.UnixMilli(), s.End().UnixMilli()
	spans := map[key][][2]int64{}
	for _, u := range s.Units() {
		from, to := s.Span(u)
		a := max(start, (start+from.Milliseconds())/w*w)
		b := min(end, (start+to.Milliseconds()+w-1)/w*w)
		k := key{u.GPU, u.Layout, u.MIG}
		if u.MIG < 0 {
			k = key{u.GPU, -1, -1}
		}
		spans[k] = append(spans[k], [2]int64{a, b})
	}
	var total int64
	for _, ss := range spans {
		slices.SortFunc(ss, func(x, y [2]int64) int { return cmp.Compare(x[0], y[0]) })
		cur := ss[0]
		for _, sp := range ss[1:] {
			if sp[0] <= cur[1] {
				cur[1] = max(cur[1], sp[1])
				continue
			}
			total += cur[1] - cur[0]
			cur = sp
		}
		total += cur[1] - cur[0]
	}
	return total
}

func sc(t *testing.T, path string) *scenario.Scenario {
	t.Helper()
	s, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
