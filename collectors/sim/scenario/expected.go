package scenario

import (
	"math/big"
	"sort"
	"time"
)

// UnitUsage is what a unit's milliseconds over its span (Scenario.Span:
// the whole scenario, unless a reconfiguration of its GPU bounds it)
// should be metered as. Usage, Idle and Gap sum to the span in ms.
type UnitUsage struct {
	Unit Unit
	// From and To are the unit's span, offsets from the start.
	From, To time.Duration
	// Usage is GPU-milliseconds per tenant (only tenants with usage).
	Usage map[string]int64
	// Idle is time the unit was readable and ran no job.
	Idle int64
	// Gap is time the unit's GPU was lost.
	Gap int64
}

// Expected is the GPU-milliseconds each tenant should be metered for over
// the scenario, summed over units: see ExpectedUnits.
func Expected(s *Scenario) map[string]int64 {
	out := map[string]int64{}
	for _, u := range ExpectedUnits(s) {
		for t, ms := range u.Usage {
			out[t] += ms
		}
	}
	return out
}

// ExpectedUnits computes, from the scenario's job intervals, faults and
// reconfigurations alone (never from meter code), how each unit's time
// over its span divides into tenants' usage, idle and gap. A unit exists
// only while its layout is in force: the instances of a layout replaced at
// a reconfiguration are metered until it, those of the new one from it.
//
// Between consecutive change points (job starts and ends, faults) the set
// of jobs on a unit is fixed. Such an interval counts for nobody (Gap)
// while the unit's GPU is lost, is Idle when no job runs, and otherwise
// belongs to the tenants of the running jobs: one tenant gets all of it;
// several split it by weight: a tenant's exact share is d·w/W, and the
// shares are summed exactly over the unit's span and rounded once (down,
// the milliseconds left to the largest fractions, ties to the lexically
// smaller tenant). A tenant's weight is max(1, the sum of its running
// processes' utilization) on a whole GPU, and 1 on a MIG instance (NVML
// has no per-process utilization there, so the split is equal). Restarts
// change nothing: a restarted process is replaced in the same instant.
//
// This equals what the meter produces, to the millisecond, when every
// change point falls on a poll tick (Start + k × PollInterval), the poll
// interval divides the meter's window, and each window's split comes out
// in whole milliseconds (the meter rounds per window: otherwise less than
// 1 ms apart per window of shared time); a change point off the ticks is
// metered at the next tick instead, an error of less than one poll
// interval per job start, job end or fault edge.
func ExpectedUnits(s *Scenario) []UnitUsage {
	units := s.Units()
	out := make([]UnitUsage, 0, len(units))
	for _, u := range units {
		out = append(out, expectUnit(s, u))
	}
	return out
}

func expectUnit(s *Scenario, u Unit) UnitUsage {
	from, to := s.Span(u)
	res := UnitUsage{Unit: u, From: from, To: to, Usage: map[string]int64{}}
	var jobs []*Job
	points := []time.Duration{from, to}
	for i := range s.Jobs {
		if j := &s.Jobs[i]; j.Unit() == u {
			jobs = append(jobs, j) // validation keeps it inside the span
			points = append(points, j.Start, j.End)
		}
	}
	var faults []*Fault
	for i := range s.Faults {
		if f := &s.Faults[i]; f.GPU == u.GPU {
			faults = append(faults, f)
			points = append(points, min(max(f.LostAt, from), to), min(max(f.BackAt, from), to))
		}
	}
	sort.Slice(points, func(a, b int) bool { return points[a] < points[b] })

	weights := map[string]int64{}
	fracs := map[string]*big.Rat{}
	for k := 1; k < len(points); k++ {
		a, b := points[k-1], points[k]
		if a == b {
			continue
		}
		ms := int64((b - a) / time.Millisecond)
		lost := false
		for _, f := range faults {
			if f.LostAt <= a && a < f.BackAt {
				lost = true
			}
		}
		if lost {
			res.Gap += ms
			continue
		}
		clear(weights)
		for _, j := range jobs {
			if j.Start <= a && a < j.End {
				w := int64(1)
				if u.MIG < 0 {
					w = int64(j.Processes * j.Utilization)
				}
				weights[j.Tenant] += w
			}
		}
		switch len(weights) {
		case 0:
			res.Idle += ms
		case 1:
			for t := range weights {
				res.Usage[t] += ms
			}
		default:
			splitExact(ms, weights, res.Usage, fracs)
		}
	}
	settleExact(res.Usage, fracs)
	return res
}

// splitExact gives each of weights' tenants its exact share of ms: the
// whole milliseconds to usage, the fraction to fracs.
func splitExact(ms int64, weights map[string]int64, usage map[string]int64, fracs map[string]*big.Rat) {
	var sum int64
	for _, w := range weights {
		sum += max(1, w)
	}
	for t, w := range weights {
		share := big.NewRat(ms*max(1, w), sum)
		if fracs[t] == nil {
			fracs[t] = new(big.Rat)
		}
		fracs[t].Add(fracs[t], share)
		whole := new(big.Int).Quo(fracs[t].Num(), fracs[t].Denom())
		usage[t] += whole.Int64()
		fracs[t].Sub(fracs[t], new(big.Rat).SetInt(whole))
	}
}

// settleExact hands the milliseconds the fractions add up to, one each to
// the largest fractions, ties to the lexically smaller tenant.
func settleExact(usage map[string]int64, fracs map[string]*big.Rat) {
	left := new(big.Rat)
	tenants := make([]string, 0, len(fracs))
	for t, f := range fracs {
		left.Add(left, f)
		tenants = append(tenants, t)
	}
	sort.Slice(tenants, func(i, j int) bool {
		if c := fracs[tenants[i]].Cmp(fracs[tenants[j]]); c != 0 {
			return c > 0
		}
		return tenants[i] < tenants[j]
	})
	n := new(big.Int).Quo(left.Num(), left.Denom()).Int64()
	for _, t := range tenants[:n] {
		usage[t]++
	}
}
