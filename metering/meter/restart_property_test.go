package meter

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/protocol"
)

// downSpan is a stretch [c, r) the agent was down, for the units named.
type downSpan struct {
	c, r  int64 // ms from base
	units []string
}

// TestRandomRestartsMatchReference runs random sequences with random
// restarts: after some Observe the meter crashes (or is stopped), its
// checkpoint goes through its encoding into a new meter, and the wall clock
// jumps by a random downtime (forward across several windows, or back). The
// reference meters the same timeline with the down stretches as agent_down;
// it works out where each checkpoint must close, and which observations the
// crash lost, from the rules in doc.go alone.
func TestRandomRestartsMatchReference(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x72657374617274))
			sc := randomScenario(rng, true)
			w := sc.window.Milliseconds()
			opts := Options{Node: "n", Window: sc.window, MaxHold: sc.hold}
			m, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}

			var (
				recs, segRecs []protocol.Record
				evs           []refEvent
				cuts          []int64
				stopSeen      = map[int64][]string{} // cut -> units observed at it before the Stop
				downs         []downSpan
				lastUnits     []string
				off           int64 // added to the scenario's times: the downtime so far
				anchor, r0    int64 // the segment's first position and first raw time
				pos           int64 // the last position
				first         = true
				resumed       bool  // the segment continues a checkpoint
				segC          int64 // where the segment's timeline starts
				restarts      int
			)
			for i, s := range sc.steps {
				raw := s.at + off
				wasFirst := first
				if first {
					first = false
					anchor, r0 = raw, raw
					if resumed {
						anchor = max(raw, segC)
						if raw > segC {
							evs = append(evs, refEvent{pos: segC, obs: unitSet(lastUnits), down: true})
							downs = append(downs, downSpan{segC, raw, lastUnits})
						}
					} else {
						segC = raw
					}
					pos = anchor
				} else {
					pos = max(anchor+raw-r0, pos)
				}
				got := m.Observe(at(raw), s.obs)
				if wasFirst {
					// The clock is behind when the restart's wall time is
					// before the checkpoint; the timeline is then anchored at c.
					if want := anchor - raw; m.ClockBehind().Milliseconds() != want {
						t.Errorf("ClockBehind %v, want %d ms", m.ClockBehind(), want)
					}
				}
				recs, segRecs = append(recs, got...), append(segRecs, got...)
				evs = append(evs, refEvent{pos: pos, obs: byUnit(s.obs)})
				lastUnits = slices.Sorted(maps.Keys(byUnit(s.obs)))
				if i == len(sc.steps)-1 || rng.IntN(100) >= 12 {
					continue
				}

				// Crash or stop here; c is where the checkpoint must close.
				restarts++
				var c int64
				graceful := rng.IntN(100) < 40
				if graceful {
					stopRaw := raw + int64(rng.IntN(1500))
					c = max(anchor+stopRaw-r0, pos)
					got := m.Stop(at(stopRaw))
					recs, segRecs = append(recs, got...), append(segRecs, got...)
					checkTotals(t, m, segRecs)
					cuts = append(cuts, c)
					if abs := base.UnixMilli() + c; abs%w != 0 && c > segC {
						// An observation at the Stop position is in the
						// window Stop closes (its new units absent in all of it).
						for _, e := range evs {
							if e.pos == c {
								stopSeen[c] = append(stopSeen[c], slices.Collect(maps.Keys(e.obs))...)
							}
						}
					}
				} else {
					c = max(segC, floorDiv(pos, w)*w) // the open window's start
				}
				zero := !graceful && !resumed && c == segC
				cp := m.Checkpoint()
				switch {
				case zero && cpSummary(cp) != "zero":
					t.Fatalf("restart %d: checkpoint %s, want zero (no window closed)", restarts, cpSummary(cp))
				case !zero && cpSummary(cp) != fmt.Sprintf("%d %s", c, strings.Join(lastUnits, " ")):
					t.Fatalf("restart %d: checkpoint %q, want closed at %d with %v", restarts, cpSummary(cp), c, lastUnits)
				case !zero && len(recs) > 0 && recs[len(recs)-1].WindowEnd.Sub(base).Milliseconds() != c:
					t.Fatalf("restart %d: checkpoint at %d, last record ends %v", restarts, c, recs[len(recs)-1].WindowEnd)
				}
				raw2, err := cp.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var saved Checkpoint
				if err := saved.UnmarshalBinary(raw2); err != nil {
					t.Fatal(err)
				}
				if m, err = New(opts); err != nil {
					t.Fatal(err)
				}
				if err := m.Resume(saved); err != nil {
					t.Fatal(err)
				}
				if zero {
					// Nothing was returned: the timeline starts afresh.
					if len(recs) > 0 {
						t.Fatalf("restart %d: zero checkpoint after %d records", restarts, len(recs))
					}
					evs, cuts, downs, resumed = nil, nil, nil, false
					clear(stopSeen)
				} else {
					// The crash lost what the open window held.
					evs = slices.DeleteFunc(evs, func(e refEvent) bool { return e.pos >= c })
					downs = slices.DeleteFunc(downs, func(d downSpan) bool { return d.c >= c })
					for i := range downs {
						downs[i].r = min(downs[i].r, c)
					}
					segC, resumed = c, true
				}
				segRecs = nil
				first = true
				switch r := rng.IntN(100); {
				case r < 20:
					off -= int64(rng.IntN(3000)) // the wall clock is behind
				case r < 40:
					off += int64(rng.IntN(int(6 * w))) // down for several windows
				default:
					off += int64(rng.IntN(int(w)))
				}
			}
			stop := max(anchor+sc.stop+off-r0, pos)
			got := m.Stop(at(sc.stop + off))
			recs, segRecs = append(recs, got...), append(segRecs, got...)
			checkTotals(t, m, segRecs)
			var absCuts []int64
			for _, c := range cuts {
				absCuts = append(absCuts, base.UnixMilli()+c)
			}
			checkRecords(t, recs, "n", sc.window, absCuts...)

			gotMs := map[refKey]int64{}
			for _, r := range recs {
				gotMs[refKey{r.WindowStart.Sub(base).Milliseconds(), r.WindowEnd.Sub(base).Milliseconds(), r.GPUUUID, r.Kind, r.Tenant + r.GapReason}] += r.GPUMillis
			}
			compareReference(t, gotMs, refRecords(evs, cuts, stopSeen, stop, sc.window, sc.hold))
			checkTiling(t, recs, evs[0].pos, stop)
			checkDown(t, recs, downs)
			if got, most := energyOf(recs, "GPU-0"), energyBound(sc, "GPU-0"); got > most {
				t.Errorf("GPU-0 records hold %d mJ, the counter rose by at most %d mJ", got, most)
			}
			if t.Failed() {
				t.Logf("window %v hold %v steps %d restarts %d downs %v cuts %v", sc.window, sc.hold, len(sc.steps), restarts, downs, cuts)
			}
		})
	}
}

func unitSet(uuids []string) map[string]attribution.Observation {
	m := map[string]attribution.Observation{}
	for _, u := range uuids {
		m[u] = attribution.Observation{}
	}
	return m
}

// checkTotals: after Stop, a meter's Totals are exactly its own records.
func checkTotals(t *testing.T, m *Meter, recs []protocol.Record) {
	t.Helper()
	sums := map[TotalsKey]int64{}
	for _, r := range recs {
		sums[TotalsKey{Tenant: r.Tenant, UnitUUID: r.GPUUUID, Kind: r.Kind, GapReason: r.GapReason}] += r.GPUMillis
	}
	if tot := m.Totals(); !maps.Equal(tot, sums) {
		t.Errorf("Totals after Stop differ from the records:\n%v\n%v", tot, sums)
	}
}

// checkTiling: GPU-0, in every observation, has windows that tile
// [from, to) with no overlap and no hole; every other unit's windows are
// some of GPU-0's.
func checkTiling(t *testing.T, recs []protocol.Record, from, to int64) {
	t.Helper()
	type span struct{ s, e int64 }
	wins := map[string]map[span]bool{}
	for _, r := range recs {
		if wins[r.GPUUUID] == nil {
			wins[r.GPUUUID] = map[span]bool{}
		}
		wins[r.GPUUUID][span{r.WindowStart.Sub(base).Milliseconds(), r.WindowEnd.Sub(base).Milliseconds()}] = true
	}
	tiles := slices.SortedFunc(maps.Keys(wins["GPU-0"]), func(a, b span) int { return int(a.s - b.s) })
	at := from
	for _, sp := range tiles {
		if sp.s != at {
			t.Errorf("GPU-0: window %d-%d follows %d: hole or overlap", sp.s, sp.e, at)
		}
		at = sp.e
	}
	if at != to {
		t.Errorf("GPU-0: windows end at %d, the timeline at %d", at, to)
	}
	for u, ws := range wins {
		for sp := range ws {
			if !wins["GPU-0"][sp] {
				t.Errorf("%s: window %d-%d is not one of GPU-0's", u, sp.s, sp.e)
			}
		}
	}
}

// checkDown: each unit's agent_down ms are exactly the down stretches'
// length for the units their checkpoints named, counted without windows.
func checkDown(t *testing.T, recs []protocol.Record, downs []downSpan) {
	t.Helper()
	got, want := map[string]int64{}, map[string]int64{}
	for _, r := range recs {
		if r.GapReason == protocol.GapAgentDown {
			got[r.GPUUUID] += r.GPUMillis
		}
	}
	for _, d := range downs {
		for _, u := range d.units {
			want[u] += d.r - d.c
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("agent_down ms per unit %v, down stretches %v", got, want)
	}
}
