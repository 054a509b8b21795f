package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/coverage"
)

// Canonical GPU UUIDs of the coverage tests.
const (
	covA = "GPU-aaaaaaaa-0000-4000-8000-00000000000a" // n1's, registered before the day
	covB = "GPU-aaaaaaaa-0000-4000-8000-00000000000b" // n1's, registered at 06:00
	covC = "GPU-cccccccc-0000-4000-8000-00000000000c" // n2's (provider p2)
)

// cday is the coverage tests' day, 2026-11-02 UTC.
var cday = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// at is cday plus h hours.
func at(h float64) time.Time { return cday.Add(time.Duration(h * float64(time.Hour))) }

// setRegistered sets when a GPU was registered.
func setRegistered(t *testing.T, s *Store, gpu string, when time.Time) {
	t.Helper()
	if _, err := s.w.ExecContext(context.Background(), s.d.rebind(`UPDATE node_gpus SET registered_ms = ? WHERE gpu_uuid = ?`),
		when.UnixMilli(), gpu); err != nil {
		t.Fatal(err)
	}
}

// addGPUWindows stores record intervals of a GPU as ingest would (a row
// ingest already wrote is left as it is).
func addGPUWindows(t *testing.T, s *Store, node, gpu string, ivs ...[2]time.Time) {
	t.Helper()
	for _, iv := range ivs {
		if _, err := s.w.ExecContext(context.Background(), s.d.rebind(`INSERT INTO gpu_windows
			(gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled) VALUES (?, ?, ?, ?, 0)
			ON CONFLICT (gpu_uuid, window_start_ms, window_end_ms) DO NOTHING`),
			gpu, iv[0].UnixMilli(), iv[1].UnixMilli(), node); err != nil {
			t.Fatal(err)
		}
	}
}

// hours is [at(from), at(to)).
func hours(from, to float64) [2]time.Time { return [2]time.Time{at(from), at(to)} }

// covSummary is what a test checks of a GPU's coverage: the span, the
// covered time and the holes, in hours from cday.
type covSummary struct {
	gpu            string
	from, to       float64
	covered        float64
	holes          [][2]float64
	more           int
	expectedEquals bool // ExpectedMillis == to - from
}

func summarize(g GPUCoverage) covSummary {
	h := func(t time.Time) float64 { return t.Sub(cday).Hours() }
	c := covSummary{gpu: g.GPU, from: h(g.From), to: h(g.To), covered: float64(g.CoveredMillis) / float64(time.Hour/time.Millisecond),
		holes: [][2]float64{}, more: g.MoreHoles, expectedEquals: g.ExpectedMillis == g.To.Sub(g.From).Milliseconds()}
	for _, x := range g.Holes {
		c.holes = append(c.holes, [2]float64{h(x.From), h(x.To)})
	}
	return c
}

// coverageFixture: n1 (p1) with covA and covB, n2 (p2) with covC, and
// their record intervals on cday.
func coverageFixture(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	must(t, s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p1", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{covA, covB}...)}, t0))
	must(t, s.RegisterNode(ctx, Registration{ID: "n2", Provider: "p2", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{covC}...)}, t0))
	setRegistered(t, s, covA, at(-48))
	setRegistered(t, s, covB, at(6))
	setRegistered(t, s, covC, at(-48))
	// covA: a hole at the start [0, 1), overlapping [1, 5) and [4, 8)
	// with [5, 6) nested in them, a hole [8, 9), then [9, 20) and a hole
	// to the day's end; windows before and after the day.
	addGPUWindows(t, s, "n1", covA, hours(-2, -1), hours(1, 5), hours(4, 8), hours(5, 6), hours(9, 20), hours(25, 26))
	// covB, registered at 06:00: a window before it (not expected, so
	// not counted), then the rest of the day in two.
	addGPUWindows(t, s, "n1", covB, hours(5, 6), hours(6, 12), hours(12, 24))
	// covC: one long window from the day before into the day, then
	// nothing.
	addGPUWindows(t, s, "n2", covC, hours(-20, 0.5))
}

func TestCoverage(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		coverageFixture(t, s)
		a := covSummary{gpu: covA, from: 0, to: 24, covered: 18, holes: [][2]float64{{0, 1}, {8, 9}, {20, 24}}, expectedEquals: true}
		b := covSummary{gpu: covB, from: 6, to: 24, covered: 18, holes: [][2]float64{}, expectedEquals: true}
		c := covSummary{gpu: covC, from: 0, to: 24, covered: 0.5, holes: [][2]float64{{0.5, 24}}, expectedEquals: true}
		tests := []struct {
			name string
			f    CoverageFilter
			want []covSummary
		}{
			{name: "every GPU, the day over", f: CoverageFilter{From: at(0), To: at(24), Now: at(72)}, want: []covSummary{a, b, c}},
			{name: "one provider", f: CoverageFilter{Provider: "p1", From: at(0), To: at(24), Now: at(72)}, want: []covSummary{a, b}},
			{name: "one node", f: CoverageFilter{Node: "n2", From: at(0), To: at(24), Now: at(72)}, want: []covSummary{c}},
			{name: "one GPU", f: CoverageFilter{GPU: covB, From: at(0), To: at(24), Now: at(72)}, want: []covSummary{b}},
			{name: "an unknown provider", f: CoverageFilter{Provider: "p9", From: at(0), To: at(24), Now: at(72)}, want: []covSummary{}},
			{
				name: "a period not over: clipped at now",
				f:    CoverageFilter{Node: "n1", From: at(0), To: at(48), Now: at(30)},
				want: []covSummary{
					{gpu: covA, from: 0, to: 30, covered: 19, holes: [][2]float64{{0, 1}, {8, 9}, {20, 25}, {26, 30}}, expectedEquals: true},
					{gpu: covB, from: 6, to: 30, covered: 18, holes: [][2]float64{{24, 30}}, expectedEquals: true},
				},
			},
			{
				name: "a period not begun expects nothing",
				f:    CoverageFilter{Node: "n1", From: at(48), To: at(72), Now: at(30)},
				want: []covSummary{
					{gpu: covA, from: 48, to: 48, holes: [][2]float64{}, expectedEquals: true},
					{gpu: covB, from: 48, to: 48, holes: [][2]float64{}, expectedEquals: true},
				},
			},
			{
				name: "a GPU registered after the period is not listed",
				f:    CoverageFilter{Node: "n1", From: at(0), To: at(6), Now: at(72)},
				want: []covSummary{{gpu: covA, from: 0, to: 6, covered: 5, holes: [][2]float64{{0, 1}}, expectedEquals: true}},
			},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Coverage(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				sums := []covSummary{}
				for _, g := range got {
					sums = append(sums, summarize(g))
				}
				if !reflect.DeepEqual(sums, tc.want) {
					t.Errorf("coverage\n got %+v\nwant %+v", sums, tc.want)
				}
				for _, g := range got {
					if wantProvider := map[string]string{"n1": "p1", "n2": "p2"}[g.Node]; g.Provider != wantProvider {
						t.Errorf("GPU %s: node %q provider %q", g.GPU, g.Node, g.Provider)
					}
				}
			})
		}
		if _, err := s.Coverage(ctx, CoverageFilter{From: at(0), To: at(24)}); err == nil {
			t.Error("coverage without now: no error")
		}
		if _, err := s.Coverage(ctx, CoverageFilter{From: at(24), To: at(0), Now: at(72)}); err == nil {
			t.Error("coverage of an empty period: no error")
		}
	})
}

// TestCoverageListsAtMostMaxHoles: a GPU that reported every other minute
// of a day lists the first MaxHoles holes and counts the rest.
func TestCoverageListsAtMostMaxHoles(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		s := open(t)
		must(t, s.RegisterNode(context.Background(), Registration{ID: "n1", Provider: "p1", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{covA}...)}, t0))
		setRegistered(t, s, covA, at(-1))
		var ivs [][2]time.Time
		for m := 0; m < 24*60; m += 2 {
			ivs = append(ivs, [2]time.Time{cday.Add(time.Duration(m) * time.Minute), cday.Add(time.Duration(m+1) * time.Minute)})
		}
		addGPUWindows(t, s, "n1", covA, ivs...)
		got, err := s.Coverage(context.Background(), CoverageFilter{From: at(0), To: at(24), Now: at(48)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d GPUs, want 1", len(got))
		}
		g := got[0]
		if g.CoveredMillis != 12*3_600_000 || len(g.Holes) != coverage.MaxHoles || g.MoreHoles != 720-coverage.MaxHoles {
			t.Errorf("covered %d ms, %d holes listed and %d more; want 12 h, %d and %d", g.CoveredMillis, len(g.Holes), g.MoreHoles,
				coverage.MaxHoles, 720-coverage.MaxHoles)
		}
	})
}
