package scenario

import (
	"fmt"
	"maps"
	"testing"
)

// small is the head of the handmade scenarios: 10 s, GPU 0 whole, GPU 1
// with two MIG instances, tenants a, b, c.
const small = `start: 2026-11-23T00:00:00Z
duration: 10s
gpus:
  - {}
  - mig: [3g.40gb, 3g.40gb]
tenants: {a: {uid: 1}, b: {uid: 2}, c: {uid: 3}}
`

func TestExpected(t *testing.T) {
	type unitWant struct {
		usage     map[string]int64
		idle, gap int64
	}
	tests := []struct {
		name string
		jobs string // YAML after small
		want unitWant
		unit Unit // the zero Unit stands for GPU 0, whole
	}{
		{
			name: "one tenant gets the interval",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 2s, end: 7s}]",
			want: unitWant{usage: map[string]int64{"a": 5000}, idle: 5000},
		},
		{
			name: "restarts change nothing",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 2s, end: 7s, restart_every: 1s, processes: 3}]",
			want: unitWant{usage: map[string]int64{"a": 5000}, idle: 5000},
		},
		{
			// 3333⅓ each, rounded once: the odd ms to the lexically smaller.
			name: "equal weights: exact shares, rounded once",
			jobs: "jobs: [{tenant: c, gpu: 0, start: 0s, end: 10s}, {tenant: b, gpu: 0, start: 0s, end: 10s}, {tenant: a, gpu: 0, start: 0s, end: 10s}]",
			want: unitWant{usage: map[string]int64{"a": 3334, "b": 3333, "c": 3333}},
		},
		{
			name: "split 60:30 by utilization",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 0s, end: 10s, utilization: 60}, {tenant: b, gpu: 0, start: 5s, end: 10s, utilization: 30}]",
			// 5 s alone, then 5000 ms at 2:1: 3333⅓ and 1666⅔.
			want: unitWant{usage: map[string]int64{"a": 5000 + 3333, "b": 1667}},
		},
		{
			name: "weights sum a tenant's processes and jobs",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 0s, end: 4s, utilization: 30, processes: 2}, {tenant: b, gpu: 0, start: 0s, end: 4s, utilization: 20}, {tenant: b, gpu: 0, start: 0s, end: 4s, utilization: 20}]",
			// 60:40 → 600:400 per tick.
			want: unitWant{usage: map[string]int64{"a": 2400, "b": 1600}, idle: 6000},
		},
		{
			name: "all utilizations 0: equal split",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 0s, end: 10s, utilization: 0}, {tenant: b, gpu: 0, start: 0s, end: 10s, utilization: 0}]",
			want: unitWant{usage: map[string]int64{"a": 5000, "b": 5000}},
		},
		{
			name: "a tenant at 0 beside one at 99 weighs 1",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 0s, end: 10s, utilization: 0}, {tenant: b, gpu: 0, start: 0s, end: 10s, utilization: 99}]",
			want: unitWant{usage: map[string]int64{"a": 100, "b": 9900}},
		},
		{
			name: "MIG instance: equal split whatever the utilization",
			jobs: "jobs: [{tenant: a, gpu: 1, mig: 1, start: 0s, end: 10s, utilization: 90}, {tenant: b, gpu: 1, mig: 1, start: 0s, end: 3s, utilization: 10}]",
			unit: Unit{GPU: 1, MIG: 1},
			want: unitWant{usage: map[string]int64{"a": 8500, "b": 1500}},
		},
		{
			name: "other MIG instance untouched",
			jobs: "jobs: [{tenant: a, gpu: 1, mig: 1, start: 0s, end: 10s}]",
			unit: Unit{GPU: 1, MIG: 0},
			want: unitWant{usage: map[string]int64{}, idle: 10000},
		},
		{
			name: "lost GPU counts for nobody",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 1s, end: 9s}]\nfaults: [{gpu: 0, lost_at: 3s, back_at: 5s}, {gpu: 0, lost_at: 8s}]",
			want: unitWant{usage: map[string]int64{"a": 5000}, idle: 1000, gap: 4000},
		},
		{
			name: "fault on the MIG GPU covers its instances",
			jobs: "jobs: [{tenant: a, gpu: 1, mig: 0, start: 0s, end: 10s}]\nfaults: [{gpu: 1, lost_at: 4s, back_at: 6s}]",
			unit: Unit{GPU: 1, MIG: 0},
			want: unitWant{usage: map[string]int64{"a": 8000}, gap: 2000},
		},
		{
			name: "off-tick change points split within the tick",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 0s, end: 3s}, {tenant: b, gpu: 0, start: 0.5s, end: 2.25s}]",
			// a alone 0-0.5; halves 0.5-1, 1-2, 2-2.25; a alone 2.25-3.
			want: unitWant{usage: map[string]int64{"a": 500 + 250 + 500 + 125 + 750, "b": 250 + 500 + 125}, idle: 7000},
		},
		{
			name: "odd split across a partial tick",
			jobs: "jobs: [{tenant: a, gpu: 0, start: 0s, end: 10s}, {tenant: b, gpu: 0, start: 0s, end: 10s}, {tenant: c, gpu: 0, start: 0.999s, end: 2.001s}]",
			// 1002 ms three ways (334 each), the other 8998 ms two ways.
			want: unitWant{usage: map[string]int64{"a": 334 + 4499, "b": 334 + 4499, "c": 334}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("small.yaml", []byte(small+tt.jobs+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.unit == (Unit{}) {
				tt.unit = Unit{GPU: 0, MIG: -1}
			}
			var got *UnitUsage
			all := ExpectedUnits(s)
			for i := range all {
				if all[i].Unit == tt.unit {
					got = &all[i]
				}
			}
			if got == nil {
				t.Fatalf("no unit %v in %v", tt.unit, all)
			}
			for k, v := range got.Usage {
				if v == 0 {
					delete(got.Usage, k)
				}
			}
			if !maps.Equal(got.Usage, tt.want.usage) || got.Idle != tt.want.idle || got.Gap != tt.want.gap {
				t.Errorf("got usage %v idle %d gap %d\nwant usage %v idle %d gap %d",
					got.Usage, got.Idle, got.Gap, tt.want.usage, tt.want.idle, tt.want.gap)
			}
			checkUnitSums(t, s, all)
		})
	}
}

// checkUnitSums asserts the accounting invariant on the expectation
// itself: every unit's usage, idle and gap sum to its span (the duration
// without reconfiguration), and Expected is the per-tenant sum of
// ExpectedUnits.
func checkUnitSums(t *testing.T, s *Scenario, all []UnitUsage) {
	t.Helper()
	if len(all) != len(s.Units()) {
		t.Errorf("%d units expected, the scenario has %d", len(all), len(s.Units()))
	}
	sums := map[string]int64{}
	for _, u := range all {
		total := u.Idle + u.Gap
		for tenant, ms := range u.Usage {
			total += ms
			sums[tenant] += ms
		}
		from, to := s.Span(u.Unit)
		if u.From != from || u.To != to || total != (to-from).Milliseconds() {
			t.Errorf("unit %v over [%v, %v): usage+idle+gap = %d ms, want its span [%v, %v)", u.Unit, u.From, u.To, total, from, to)
		}
	}
	if got := Expected(s); !maps.Equal(got, sums) {
		t.Errorf("Expected = %v, want the units' sums %v", got, sums)
	}
}

func TestExpectedShipped(t *testing.T) {
	tests := []struct {
		path string
		want map[string]int64
	}{
		// Hand-computed in the file's header.
		{shipped[0], map[string]int64{"acme": 5_400_000, "globex": 3_200_000, "initech": 4_600_000}},
		{shipped[1], map[string]int64{
			// GPU 0: 1h alone, 4h at 70:80 with slurm-4242, 3h alone; GPU 3 MIG 2: 4h.
			"k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41": 3_600_000 + 14_400_000*7/15 + 10_800_000 + 14_400_000,
			"slurm-4242": 14_400_000 * 8 / 15,
			// GPU 2 MIG 5 from 13:00:00.5 (off-tick) and GPU 4 MIG 0 for 12 h.
			"massive-dynamic": 8*3_600_000 - 500 + 12*3_600_000,
			"unattributed":    2*3_600_000 + 3_600_000,
		}},
		{shipped[2], map[string]int64{
			"acme":   (25+25+15)*60_000 - 150_000 + 30*60_000,
			"globex": (10+30)*60_000 + 150_000 + 20*60_000,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			s, err := Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got := Expected(s)
			for tenant, want := range tt.want {
				if got[tenant] != want {
					t.Errorf("%s: %d ms, want %d", tenant, got[tenant], want)
				}
			}
			if len(got) != len(s.Tenants) {
				t.Errorf("tenants with usage %v, want all %d of the scenario's", got, len(s.Tenants))
			}
			checkUnitSums(t, s, ExpectedUnits(s))
		})
	}
}

// TestExpectedReconfigured: each layout's units are expected over their
// own span only, and a fault before a reconfiguration counts for the
// units of the layout in force then.
func TestExpectedReconfigured(t *testing.T) {
	s, err := Parse("reconfig.yaml", []byte(reconfigYAML))
	if err != nil {
		t.Fatal(err)
	}
	const m = 60_000
	want := map[Unit]string{
		{GPU: 0, MIG: 0}:             "[0s,20m0s) usage map[] idle 600000 gap 600000",
		{GPU: 0, MIG: 1}:             fmt.Sprintf("[0s,20m0s) usage map[a:%d] idle 0 gap %d", 10*m, 10*m),
		{GPU: 0, MIG: 0, Layout: 1}:  fmt.Sprintf("[20m0s,40m0s) usage map[a:%d] idle 0 gap 0", 20*m),
		{GPU: 0, MIG: -1, Layout: 2}: fmt.Sprintf("[40m0s,1h0m0s) usage map[a:%d] idle 0 gap 0", 20*m),
	}
	all := ExpectedUnits(s)
	if len(all) != len(want) {
		t.Fatalf("%d units expected, want %d", len(all), len(want))
	}
	for _, u := range all {
		got := fmt.Sprintf("[%v,%v) usage %v idle %d gap %d", u.From, u.To, u.Usage, u.Idle, u.Gap)
		if got != want[u.Unit] {
			t.Errorf("%v: %s, want %s", u.Unit, got, want[u.Unit])
		}
	}
	checkUnitSums(t, s, all)
}
