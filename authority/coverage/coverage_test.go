package coverage_test

import (
	"bytes"
	"encoding/csv"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/coverage"
)

type iv struct{ start, end int64 }

// tally runs a Tally of [lo, hi) over ivs (sorted here by start).
func tally(lo, hi int64, ivs []iv) coverage.GPU {
	ivs = append([]iv(nil), ivs...)
	sort.SliceStable(ivs, func(i, j int) bool { return ivs[i].start < ivs[j].start })
	t := coverage.NewTally(lo, hi)
	for _, v := range ivs {
		t.Add(v.start, v.end)
	}
	var g coverage.GPU
	t.Fill(&g)
	return g
}

func holes(g coverage.GPU) []iv {
	out := []iv{}
	for _, h := range g.Holes {
		out = append(out, iv{h.From.UnixMilli(), h.To.UnixMilli()})
	}
	return out
}

func TestTally(t *testing.T) {
	tests := []struct {
		name    string
		lo, hi  int64
		ivs     []iv
		covered int64
		holes   []iv
	}{
		{name: "nothing reported", lo: 0, hi: 100, covered: 0, holes: []iv{{0, 100}}},
		{name: "tiled exactly", lo: 0, hi: 100, ivs: []iv{{0, 40}, {40, 100}}, covered: 100, holes: []iv{}},
		{name: "holes at start, middle and end", lo: 0, hi: 100, ivs: []iv{{10, 30}, {50, 90}},
			covered: 60, holes: []iv{{0, 10}, {30, 50}, {90, 100}}},
		{name: "overlapping intervals count once", lo: 0, hi: 100, ivs: []iv{{0, 60}, {30, 100}}, covered: 100, holes: []iv{}},
		{name: "nested intervals count once", lo: 0, hi: 100, ivs: []iv{{0, 100}, {10, 20}, {10, 20}, {50, 60}}, covered: 100, holes: []iv{}},
		{name: "a short interval after a long one starting together", lo: 0, hi: 100, ivs: []iv{{0, 50}, {0, 10}, {70, 80}},
			covered: 60, holes: []iv{{50, 70}, {80, 100}}},
		{name: "clipped at both ends", lo: 100, hi: 200, ivs: []iv{{40, 130}, {190, 260}}, covered: 40, holes: []iv{{130, 190}}},
		{name: "intervals outside the span", lo: 100, hi: 200, ivs: []iv{{0, 100}, {200, 300}}, covered: 0, holes: []iv{{100, 200}}},
		{name: "empty span", lo: 100, hi: 100, ivs: []iv{{0, 300}}, covered: 0, holes: []iv{}},
		{name: "adjacent intervals leave no hole", lo: 0, hi: 30, ivs: []iv{{0, 10}, {10, 20}, {20, 30}}, covered: 30, holes: []iv{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := tally(tc.lo, tc.hi, tc.ivs)
			if g.ExpectedMillis != tc.hi-tc.lo || g.CoveredMillis != tc.covered || !reflect.DeepEqual(holes(g), tc.holes) || g.MoreHoles != 0 {
				t.Errorf("expected %d covered %d holes %v (+%d), want %d %d %v", g.ExpectedMillis, g.CoveredMillis, holes(g), g.MoreHoles,
					tc.hi-tc.lo, tc.covered, tc.holes)
			}
			var sum int64
			for _, h := range g.Holes {
				sum += h.Millis
			}
			if sum != g.UncoveredMillis() {
				t.Errorf("holes sum to %d ms, uncovered %d", sum, g.UncoveredMillis())
			}
		})
	}
}

func TestTallyListsAtMostMaxHoles(t *testing.T) {
	var ivs []iv
	n := coverage.MaxHoles + 17
	for i := range n {
		ivs = append(ivs, iv{int64(10*i + 5), int64(10*i + 10)}) // [10i, 10i+5) uncovered
	}
	g := tally(0, int64(10*n), ivs)
	if len(g.Holes) != coverage.MaxHoles || g.MoreHoles != 17 {
		t.Fatalf("%d holes listed, %d more; want %d and 17", len(g.Holes), g.MoreHoles, coverage.MaxHoles)
	}
	if g.CoveredMillis != int64(5*n) || g.UncoveredMillis() != int64(5*n) {
		t.Errorf("covered %d, uncovered %d; want %d each", g.CoveredMillis, g.UncoveredMillis(), 5*n)
	}
	if last := g.Holes[len(g.Holes)-1]; last.From.UnixMilli() != int64(10*(coverage.MaxHoles-1)) {
		t.Errorf("last listed hole %v, want the %dth", last, coverage.MaxHoles)
	}
}

// TestTallyMatchesReference checks the Tally against a reference model: a
// bitmap of the span's milliseconds, each interval setting its bits.
func TestTallyMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		lo := rng.Int64N(50)
		hi := lo + rng.Int64N(200)
		var ivs []iv
		for range rng.IntN(12) {
			s := rng.Int64N(300) - 30
			ivs = append(ivs, iv{s, s + 1 + rng.Int64N(60)})
		}
		covered := make([]bool, hi-lo)
		var want int64
		for _, v := range ivs {
			for ms := max(v.start, lo); ms < min(v.end, hi); ms++ {
				if !covered[ms-lo] {
					covered[ms-lo] = true
					want++
				}
			}
		}
		wantHoles := []iv{}
		for ms := int64(0); ms < hi-lo; ms++ {
			if covered[ms] {
				continue
			}
			if n := len(wantHoles); n > 0 && wantHoles[n-1].end == lo+ms {
				wantHoles[n-1].end++
			} else {
				wantHoles = append(wantHoles, iv{lo + ms, lo + ms + 1})
			}
		}
		g := tally(lo, hi, ivs)
		if g.CoveredMillis != want || !reflect.DeepEqual(holes(g), wantHoles) {
			t.Fatalf("round %d: [%d, %d) with %v: covered %d holes %v, want %d %v", round, lo, hi, ivs, g.CoveredMillis, holes(g), want, wantHoles)
		}
	}
}

func TestSpan(t *testing.T) {
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	from, to := day, day.Add(24*time.Hour)
	tests := []struct {
		name            string
		registered, now time.Time
		lo, hi          time.Time
	}{
		{name: "registered before, period over", registered: day.Add(-time.Hour), now: day.Add(48 * time.Hour), lo: from, hi: to},
		{name: "registered inside", registered: day.Add(6 * time.Hour), now: day.Add(48 * time.Hour), lo: day.Add(6 * time.Hour), hi: to},
		{name: "period not over: clipped at now", registered: day.Add(-time.Hour), now: day.Add(10 * time.Hour), lo: from, hi: day.Add(10 * time.Hour)},
		{name: "period not begun", registered: day.Add(-time.Hour), now: day.Add(-time.Minute), lo: from, hi: from},
		{name: "registered after the period", registered: day.Add(30 * time.Hour), now: day.Add(48 * time.Hour), lo: day.Add(30 * time.Hour), hi: day.Add(30 * time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := coverage.Span(from, to, tc.registered, tc.now)
			if lo != tc.lo.UnixMilli() || hi != tc.hi.UnixMilli() {
				t.Errorf("Span = [%s, %s), want [%s, %s)", time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC(), tc.lo, tc.hi)
			}
		})
	}
}

func TestWriteCSV(t *testing.T) {
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	tl := coverage.NewTally(day.UnixMilli(), day.Add(time.Hour).UnixMilli())
	tl.Add(day.Add(10*time.Minute).UnixMilli(), day.Add(50*time.Minute).UnixMilli())
	g := coverage.GPU{GPU: "GPU-aaaaaaaa-0000-4000-8000-000000000001", Node: "=n1", Provider: "p1", Registered: day.Add(-time.Hour)}
	tl.Fill(&g)
	var buf bytes.Buffer
	if err := coverage.WriteCSV(&buf, []coverage.GPU{g}); err != nil {
		t.Fatal(err)
	}
	want := "gpu_uuid,node,provider,registered,from,to,expected_ms,covered_ms,uncovered_ms,holes,more_holes\n" +
		"GPU-aaaaaaaa-0000-4000-8000-000000000001,'=n1,p1,2026-11-01T23:00:00Z,2026-11-02T00:00:00Z,2026-11-02T01:00:00Z," +
		"3600000,2400000,1200000,2026-11-02T00:00:00Z/2026-11-02T00:10:00Z;2026-11-02T00:50:00Z/2026-11-02T01:00:00Z,0\n"
	if buf.String() != want {
		t.Errorf("CSV:\n%s\nwant:\n%s", buf.String(), want)
	}
	if _, err := csv.NewReader(&buf).ReadAll(); err != nil {
		t.Errorf("output is not CSV: %v", err)
	}
}
