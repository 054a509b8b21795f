package meter

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

type step struct {
	at  int64 // ms from base
	obs []attribution.Observation
}

// ticks observes f(ms) every dt ms on [from, to).
func ticks(from, to, dt int64, f func(ms int64) []attribution.Observation) []step {
	var s []step
	for ms := from; ms < to; ms += dt {
		s = append(s, step{ms, f(ms)})
	}
	return s
}

func same(o ...attribution.Observation) func(int64) []attribution.Observation {
	return func(int64) []attribution.Observation { return o }
}

func join(parts ...[]step) []step { return slices.Concat(parts...) }

const noStop = -1

var (
	g0 = gpu("GPU-0", 50, device.Unknown)
	g1 = gpu("GPU-1", 0, device.Unknown)
)

func TestMeter(t *testing.T) {
	tests := []struct {
		name          string
		window, hold  time.Duration
		steps         []step
		stop          int64
		want          []string
		trueMs, errMs int64 // optional: the tenant's true time, and the allowed error
	}{
		{
			name:  "single tenant fills an exact window",
			steps: ticks(0, 60001, 1000, same(used(g0, "a"))),
			stop:  noStop,
			want:  []string{"0+60000 GPU-0 usage a u50 e-1 static/0/"},
		},
		{
			name: "job starting and ending on ticks is exact",
			steps: join(
				ticks(0, 10000, 1000, same(idle(g1))),
				ticks(10000, 30000, 1000, same(used(g1, "a"))),
				ticks(30000, 60000, 1000, same(idle(g1)))),
			stop: 60000,
			want: []string{"0+20000 GPU-1 usage a u0 e-1 static/0/", "0+40000 GPU-1 idle u0 e-1"},
		},
		{
			// The job runs 10300-30000; the poll at 11000 is the first to see it.
			name: "job starting between ticks is off by less than a poll",
			steps: join(
				ticks(0, 11000, 1000, same(idle(g1))),
				ticks(11000, 30000, 1000, same(used(g1, "a"))),
				ticks(30000, 60000, 1000, same(idle(g1)))),
			stop:   60000,
			want:   []string{"0+19000 GPU-1 usage a u0 e-1 static/0/", "0+41000 GPU-1 idle u0 e-1"},
			trueMs: 19700, errMs: 1000,
		},
		{
			name:  "idle unit",
			steps: ticks(0, 60000, 1000, same(idle(g1))),
			stop:  60000,
			want:  []string{"0+60000 GPU-1 idle u0 e-1"},
		},
		{
			name: "lost device is a gap until it is back",
			steps: join(
				ticks(0, 20000, 1000, same(used(g0, "a"))),
				ticks(20000, 30000, 1000, same(used(lost(g0), "a"))),
				ticks(30000, 60001, 1000, same(used(g0, "a")))),
			stop: noStop,
			want: []string{"0+50000 GPU-0 usage a u50 e-1 static/0/", "0+10000 GPU-0 gap device_lost"},
		},
		{
			name: "units appearing and disappearing mid-window are absent for the rest",
			steps: join(
				ticks(0, 25000, 1000, same(idle(g1), idle(mig("MIG-2", "GPU-9")))),
				ticks(25000, 30000, 1000, same(idle(g1), idle(mig("MIG-1", "GPU-9")), idle(mig("MIG-2", "GPU-9")))),
				ticks(30000, 90000, 1000, same(idle(g1), idle(mig("MIG-1", "GPU-9"))))),
			stop: 90000,
			want: []string{
				"0+60000 GPU-1 idle u0 e-1",
				"0+35000 MIG-1 idle u-1 e-1", "0+25000 MIG-1 gap device_absent",
				"0+30000 MIG-2 idle u-1 e-1", "0+30000 MIG-2 gap device_absent",
				// MIG-2 was absent for the whole second window: no records.
				"60000+30000 GPU-1 idle u0 e-1", "60000+30000 MIG-1 idle u-1 e-1",
			},
		},
		{
			name: "silence beyond max hold is a no_sample gap",
			steps: join(
				ticks(0, 11000, 1000, same(used(g0, "a"))),
				ticks(20000, 60001, 1000, same(used(g0, "a")))),
			stop: noStop,
			want: []string{"0+53000 GPU-0 usage a u50 e-1 static/0/", "0+7000 GPU-0 gap no_sample"},
		},
		{
			name:  "sparse observations close every window in between, each whole",
			steps: []step{{0, obs(used(g0, "a"))}, {200000, obs(used(g0, "a"))}},
			stop:  210000,
			want: []string{
				"0+3000 GPU-0 usage a u50 e-1 static/0/", "0+57000 GPU-0 gap no_sample",
				"60000+60000 GPU-0 gap no_sample",
				"120000+60000 GPU-0 gap no_sample",
				"180000+3000 GPU-0 usage a u50 e-1 static/0/", "180000+27000 GPU-0 gap no_sample",
			},
		},
		{
			name:  "first window starts at the first observation and Stop ends the last",
			steps: ticks(45500, 130001, 1000, same(used(g0, "a"))),
			stop:  130250,
			want: []string{
				"45500+14500 GPU-0 usage a u50 e-1 static/0/",
				"60000+60000 GPU-0 usage a u50 e-1 static/0/",
				"120000+10250 GPU-0 usage a u50 e-1 static/0/",
			},
		},
		{
			name: "shared unit split by utilization, utilization time-weighted",
			steps: join(
				ticks(0, 30000, 1000, same(weighted(gpu("GPU-0", 40, device.Unknown), map[string]int64{"b": 70, "a": 30}))),
				ticks(30000, 60000, 1000, same(weighted(gpu("GPU-0", 80, device.Unknown), map[string]int64{"b": 70, "a": 30})))),
			stop: 60000,
			want: []string{
				"0+18000 GPU-0 usage a u60 e-1 cgroup:kubernetes/1/utilization",
				"0+42000 GPU-0 usage b u60 e-1 cgroup:kubernetes/1/utilization",
			},
		},
		{
			// 1000 ms over three equal tenants, 60 times: each gets its
			// exact third of the window, not 334 ms of every second.
			name:  "equal split is exact per window",
			steps: ticks(0, 60000, 1000, same(used(g1, "c", "a", "b"))),
			stop:  60000,
			want: []string{
				"0+20000 GPU-1 usage a u0 e-1 static/2/equal",
				"0+20000 GPU-1 usage b u0 e-1 static/2/equal",
				"0+20000 GPU-1 usage c u0 e-1 static/2/equal",
			},
		},
		{
			name: "energy delta goes to the interval it was drawn in",
			steps: join(
				ticks(0, 30000, 1000, func(ms int64) []attribution.Observation {
					return obs(used(gpu("GPU-0", 90, 5_000_000+ms*2), "a"))
				}),
				ticks(30000, 60001, 1000, func(ms int64) []attribution.Observation {
					return obs(idle(gpu("GPU-0", 0, 5_000_000+ms*2)))
				})),
			stop: noStop,
			want: []string{"0+30000 GPU-0 usage a u90 e60000 static/0/", "0+30000 GPU-0 idle u0 e60000"},
		},
		{
			// 1001 mJ per tick over two equal 500 ms parts: 501 to a (tie to the earlier part).
			name: "energy of a shared unit splits with the time",
			steps: ticks(0, 60001, 1000, func(ms int64) []attribution.Observation {
				return obs(used(gpu("GPU-0", 100, ms/1000*1001), "a", "b"))
			}),
			stop: noStop,
			want: []string{
				"0+30000 GPU-0 usage a u100 e30060 static/1/equal",
				"0+30000 GPU-0 usage b u100 e30000 static/1/equal",
			},
		},
		{
			// 0-10000 draws 10000 mJ; 3000 ms are held, the 7000 ms gap's share
			// is dropped. Then the counter resets (0), and the last interval
			// before Stop has no reading at its end.
			name: "energy beyond max hold is dropped, counter resets count 0",
			steps: []step{
				{0, obs(used(gpu("GPU-0", 10, 0), "a"))},
				{10000, obs(used(gpu("GPU-0", 10, 10000), "a"))},
				{11000, obs(used(gpu("GPU-0", 10, 5), "a"))},
			},
			stop: 12000,
			want: []string{"0+5000 GPU-0 usage a u10 e3000 static/0/", "0+7000 GPU-0 gap no_sample"},
		},
		{
			name: "energy of an interval crossing a window boundary splits with it",
			steps: []step{
				{58000, obs(used(gpu("GPU-0", 10, 0), "a"))},
				{59500, obs(used(gpu("GPU-0", 10, 1500), "a"))},
				{61000, obs(used(gpu("GPU-0", 10, 3000), "a"))},
			},
			stop: 62000,
			want: []string{"58000+2000 GPU-0 usage a u10 e2000 static/0/", "60000+2000 GPU-0 usage a u10 e1000 static/0/"},
		},
		{
			// A time before the last one (wall clock stepped back, no monotonic
			// reading) is taken as the last position: nothing is lost or invented.
			name: "time going backwards is held at the last position",
			steps: join(
				ticks(0, 6000, 1000, same(used(g0, "a"))),
				[]step{{2000, obs(used(g0, "b"))}},
				ticks(6000, 60001, 1000, same(used(g0, "a")))),
			stop: noStop,
			want: []string{"0+59000 GPU-0 usage a u50 e-1 static/0/", "0+1000 GPU-0 usage b u50 e-1 static/0/"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			window := cmpOr(tc.window, DefaultWindow)
			m, err := New(Options{Node: "node-1", Provider: "prov", Window: tc.window, MaxHold: tc.hold})
			if err != nil {
				t.Fatal(err)
			}
			var recs []protocol.Record
			last := int64(-1 << 62)
			collect := func(got []protocol.Record, pos int64) {
				for _, r := range got {
					if end := r.WindowEnd.Sub(base).Milliseconds(); end > pos || end <= last {
						t.Errorf("call at %d returned window ending %d (previous call at %d)", pos, end, last)
					}
				}
				recs = append(recs, got...)
				last = max(last, pos)
			}
			for _, s := range tc.steps {
				collect(m.Observe(at(s.at), s.obs), s.at)
			}
			if tc.stop != noStop {
				collect(m.Stop(at(tc.stop)), tc.stop)
			}
			checkRecords(t, recs, "node-1", window)
			var got []string
			for _, r := range recs {
				got = append(got, summary(r))
				if r.Provider != "prov" {
					t.Errorf("provider %q", r.Provider)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.errMs > 0 {
				var usage int64
				for _, r := range recs {
					if r.Kind == protocol.KindUsage {
						usage += r.GPUMillis
					}
				}
				if d := usage - tc.trueMs; d > tc.errMs || -d > tc.errMs {
					t.Errorf("metered %d ms, true %d ms: error above %d ms", usage, tc.trueMs, tc.errMs)
				}
			}
		})
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
