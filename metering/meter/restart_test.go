package meter

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// cpSummary is a checkpoint in one comparable line: the closed mark as an
// offset from base, then the units.
func cpSummary(cp Checkpoint) string {
	if cp.ClosedUntil.IsZero() && len(cp.Units) == 0 {
		return "zero"
	}
	var uuids []string
	for _, u := range cp.Units {
		uuids = append(uuids, u.UUID)
	}
	return fmt.Sprintf("%d %s", cp.ClosedUntil.Sub(base).Milliseconds(), strings.Join(uuids, " "))
}

// TestRestart runs a meter, takes its checkpoint (after a crash: no Stop;
// or after a graceful Stop), passes it through its encoding, resumes a new
// meter from it and continues. All records of both runs must balance; the
// restarted run's records are compared in full.
func TestRestart(t *testing.T) {
	m1 := mig("MIG-1", "GPU-9")
	tests := []struct {
		name       string
		before     []step
		stopBefore int64 // noStop: a crash
		wantCP     string
		after      []step // after[0] is the first observation after the restart
		stop       int64
		want       []string
		wantDown   int64 // GPU-0's agent_down total after the first observation
		wantBehind time.Duration
	}{
		{
			name:   "crash mid-window: agent_down from the last closed window's end",
			before: ticks(0, 90001, 1000, same(used(g0, "a"))),
			wantCP: "60000 GPU-0", stopBefore: noStop,
			after: ticks(130500, 180000, 1000, same(used(g0, "a"))),
			stop:  180000,
			want: []string{
				"60000+60000 GPU-0 gap agent_down",
				"120000+49500 GPU-0 usage a u50 e-1 static/0/", "120000+10500 GPU-0 gap agent_down",
			},
			wantDown: 70500,
		},
		{
			name:   "graceful Stop mid-window: the same window continues from c",
			before: ticks(0, 45000, 1000, same(used(g0, "a"))),
			wantCP: "45000 GPU-0", stopBefore: 45000,
			after: ticks(50000, 90000, 1000, same(used(g0, "a"))),
			stop:  90000,
			want: []string{
				"45000+10000 GPU-0 usage a u50 e-1 static/0/", "45000+5000 GPU-0 gap agent_down",
				"60000+30000 GPU-0 usage a u50 e-1 static/0/",
			},
			wantDown: 5000,
		},
		{
			name:   "graceful Stop, restart in a later window: the stopped window is closed as agent_down",
			before: ticks(0, 45000, 1000, same(used(g0, "a"))),
			wantCP: "45000 GPU-0", stopBefore: 45000,
			after: ticks(61000, 90000, 1000, same(used(g0, "a"))),
			stop:  90000,
			want: []string{
				"45000+15000 GPU-0 gap agent_down",
				"60000+29000 GPU-0 usage a u50 e-1 static/0/", "60000+1000 GPU-0 gap agent_down",
			},
			wantDown: 16000,
		},
		{
			name:   "downtime spanning several windows: every checkpointed unit is down in each",
			before: ticks(0, 60001, 1000, same(used(g0, "a"), idle(m1))),
			wantCP: "60000 GPU-0 MIG-1", stopBefore: noStop,
			after: ticks(250000, 300000, 1000, same(used(g0, "a"), idle(m1))),
			stop:  300000,
			want: []string{
				"60000+60000 GPU-0 gap agent_down", "60000+60000 MIG-1 gap agent_down",
				"120000+60000 GPU-0 gap agent_down", "120000+60000 MIG-1 gap agent_down",
				"180000+60000 GPU-0 gap agent_down", "180000+60000 MIG-1 gap agent_down",
				"240000+50000 GPU-0 usage a u50 e-1 static/0/", "240000+10000 GPU-0 gap agent_down",
				"240000+50000 MIG-1 idle u-1 e-1", "240000+10000 MIG-1 gap agent_down",
			},
			wantDown: 190000,
		},
		{
			name:   "restart on a window boundary: whole windows of agent_down only",
			before: ticks(0, 60001, 1000, same(used(g0, "a"))),
			wantCP: "60000 GPU-0", stopBefore: noStop,
			after: ticks(180000, 200000, 1000, same(used(g0, "a"))),
			stop:  200000,
			want: []string{
				"60000+60000 GPU-0 gap agent_down", "120000+60000 GPU-0 gap agent_down",
				"180000+20000 GPU-0 usage a u50 e-1 static/0/",
			},
			wantDown: 120000,
		},
		{
			// The wall clock reads 65000 at the restart, 5.5 s before c:
			// metering goes on from 70500 and records run 5.5 s ahead.
			name:   "clock behind after a graceful Stop: anchored at c",
			before: ticks(0, 70001, 1000, same(used(g0, "a"))),
			wantCP: "70500 GPU-0", stopBefore: 70500,
			after: ticks(65000, 120000, 1000, same(used(g0, "a"))),
			stop:  120000,
			want: []string{
				"70500+49500 GPU-0 usage a u50 e-1 static/0/",
				"120000+5500 GPU-0 usage a u50 e-1 static/0/",
			},
			wantBehind: 5500 * time.Millisecond,
		},
		{
			name:   "clock behind after a crash: no closed window is metered again",
			before: ticks(0, 90001, 1000, same(used(g0, "a"))),
			wantCP: "60000 GPU-0", stopBefore: noStop,
			after: ticks(59000, 100000, 1000, same(used(g0, "a"))),
			stop:  100000,
			want:  []string{"60000+41000 GPU-0 usage a u50 e-1 static/0/"},
			// 1 s behind.
			wantBehind: time.Second,
		},
		{
			// MIG-1 was reconfigured into MIG-2 while the agent was down:
			// MIG-1 is down, then absent; MIG-2 is absent until first seen.
			name:   "unit set changed across the restart",
			before: ticks(0, 60001, 1000, same(used(g0, "a"), used(m1, "b"))),
			wantCP: "60000 GPU-0 MIG-1", stopBefore: noStop,
			after: ticks(75000, 120000, 1000, same(used(g0, "a"), used(mig("MIG-2", "GPU-9"), "c"))),
			stop:  120000,
			want: []string{
				"60000+45000 GPU-0 usage a u50 e-1 static/0/", "60000+15000 GPU-0 gap agent_down",
				"60000+15000 MIG-1 gap agent_down", "60000+45000 MIG-1 gap device_absent",
				"60000+45000 MIG-2 usage c u-1 e-1 static/0/", "60000+15000 MIG-2 gap device_absent",
			},
			wantDown: 15000,
		},
		{
			// Nothing was returned before the crash, so nothing needs
			// continuing: the new run starts its own timeline.
			name:   "crash before any window closed: a fresh start",
			before: ticks(0, 30000, 1000, same(used(g0, "a"))),
			wantCP: "zero", stopBefore: noStop,
			after: ticks(100000, 150000, 1000, same(used(g0, "a"))),
			stop:  150000,
			want: []string{
				"100000+20000 GPU-0 usage a u50 e-1 static/0/",
				"120000+30000 GPU-0 usage a u50 e-1 static/0/",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Node: "node-1", Provider: "prov"}
			a, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			var recs []protocol.Record
			for _, s := range tc.before {
				recs = append(recs, a.Observe(at(s.at), s.obs)...)
			}
			if tc.stopBefore != noStop {
				recs = append(recs, a.Stop(at(tc.stopBefore))...)
			}
			cp := a.Checkpoint()
			if got := cpSummary(cp); got != tc.wantCP {
				t.Fatalf("checkpoint %q, want %q", got, tc.wantCP)
			}
			if n := len(recs); n > 0 && !recs[n-1].WindowEnd.Equal(cp.ClosedUntil) {
				t.Errorf("checkpoint closes at %v, the last record ends at %v", cp.ClosedUntil, recs[n-1].WindowEnd)
			}
			raw, err := cp.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var saved Checkpoint
			if err := saved.UnmarshalBinary(raw); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}

			b, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Resume(saved); err != nil {
				t.Fatal(err)
			}
			var got []protocol.Record
			for i, s := range tc.after {
				got = append(got, b.Observe(at(s.at), s.obs)...)
				if i == 0 {
					down := b.Totals()[TotalsKey{UnitUUID: "GPU-0", Kind: protocol.KindGap, GapReason: protocol.GapAgentDown}]
					if down != tc.wantDown {
						t.Errorf("agent_down total after the first observation: %d ms, want %d", down, tc.wantDown)
					}
				}
			}
			got = append(got, b.Stop(at(tc.stop))...)
			checkRecords(t, slices.Concat(recs, got), "node-1", DefaultWindow, cp.ClosedUntil.UnixMilli())
			var sums []string
			for _, r := range got {
				sums = append(sums, summary(r))
			}
			if !slices.Equal(sums, tc.want) {
				t.Errorf("records after the restart:\n%s\nwant:\n%s", strings.Join(sums, "\n"), strings.Join(tc.want, "\n"))
			}
			if d := b.ClockBehind(); d != tc.wantBehind {
				t.Errorf("ClockBehind %v, want %v", d, tc.wantBehind)
			}
		})
	}
}

// TestCheckpointState: Checkpoint says exactly how far the returned records
// go, and a resumed meter keeps the resumed mark until it closes a window.
func TestCheckpointState(t *testing.T) {
	resumed := func(t *testing.T) *Meter {
		t.Helper()
		a, _ := New(Options{Node: "n"})
		for _, s := range ticks(0, 60001, 1000, same(used(g0, "a"), idle(g1))) {
			a.Observe(at(s.at), s.obs)
		}
		b, _ := New(Options{Node: "n"})
		if err := b.Resume(a.Checkpoint()); err != nil {
			t.Fatal(err)
		}
		return b
	}
	fresh := func(t *testing.T) *Meter {
		t.Helper()
		m, err := New(Options{Node: "n"})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		run  func(t *testing.T) *Meter
		want string
	}{
		{"new meter", fresh, "zero"},
		{"observed, no window closed", func(t *testing.T) *Meter {
			m := fresh(t)
			m.Observe(at(1000), obs(used(g0, "a")))
			m.Observe(at(59999), obs(used(g0, "a")))
			return m
		}, "zero"},
		{"a window closed: its end and the latest observation's units", func(t *testing.T) *Meter {
			m := fresh(t)
			m.Observe(at(1000), obs(used(g0, "a")))
			m.Observe(at(61000), obs(used(g0, "a"), idle(g1)))
			m.Observe(at(62000), obs(idle(g1)))
			return m
		}, "60000 GPU-1"},
		{"stopped mid-window: the stop position and the last units", func(t *testing.T) *Meter {
			m := fresh(t)
			m.Observe(at(1000), obs(used(g0, "a"), idle(g1)))
			m.Stop(at(30500))
			return m
		}, "30500 GPU-0 GPU-1"},
		{"stopped at the first observation", func(t *testing.T) *Meter {
			m := fresh(t)
			m.Observe(at(1000), obs(used(g0, "a")))
			m.Stop(at(1000))
			return m
		}, "1000 GPU-0"},
		{"resumed, not observed: the resumed checkpoint", resumed, "60000 GPU-0 GPU-1"},
		{"resumed, observed, no window closed: the resumed mark, the units seen", func(t *testing.T) *Meter {
			m := resumed(t)
			m.Observe(at(70000), obs(idle(g1)))
			return m
		}, "60000 GPU-1"},
		{"resumed, a window closed", func(t *testing.T) *Meter {
			m := resumed(t)
			m.Observe(at(70000), obs(idle(g1)))
			m.Observe(at(121000), obs(idle(g1)))
			return m
		}, "120000 GPU-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp := tc.run(t).Checkpoint()
			if got := cpSummary(cp); got != tc.want {
				t.Errorf("checkpoint %q, want %q", got, tc.want)
			}
			for _, u := range cp.Units {
				if u.Processes != nil || u.Err != nil || u.UtilizationPercent != -1 || u.EnergyMillijoules != -1 || u.ParentUUID == "" {
					t.Errorf("unit %+v: identity fields only", u)
				}
			}
		})
	}
}
