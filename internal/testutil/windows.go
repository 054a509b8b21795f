package testutil

import (
	"sort"
	"testing"
)

// Window is a record's time, [Start, End) in Unix milliseconds.
type Window struct{ Start, End int64 }

// CheckTiled checks one unit's windows, given the GPU milliseconds its
// records put in each: every window sums to its length, and in order of
// start they follow each other with no hole and no overlap. It returns
// the windows in that order.
func CheckTiled(t testing.TB, unit string, sums map[Window]int64) []Window {
	t.Helper()
	wins := make([]Window, 0, len(sums))
	for w, ms := range sums {
		if ms != w.End-w.Start {
			t.Errorf("unit %s window [%d,%d): records sum to %d ms, want %d", unit, w.Start, w.End, ms, w.End-w.Start)
		}
		wins = append(wins, w)
	}
	sort.Slice(wins, func(i, j int) bool { return wins[i].Start < wins[j].Start })
	for i := 1; i < len(wins); i++ {
		if wins[i].Start != wins[i-1].End {
			t.Errorf("unit %s: window [%d,%d) follows one ending %d: a hole or an overlap", unit, wins[i].Start, wins[i].End, wins[i-1].End)
		}
	}
	return wins
}
