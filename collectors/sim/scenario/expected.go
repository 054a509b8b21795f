package scenario

import (
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
// several split it by weight, per poll interval (the meter splits each
// sample's hold separately, so rounding happens per tick): a tenant's
// weight is max(1, the sum of its running processes' utilization) on a
// whole GPU, and 1 on a MIG instance (NVML has no per-process utilization
// there, so the split is equal). The split is by the largest-remainder
// method, remainder ties to the lexically smaller tenant. Restarts change
// nothing: a restarted process is replaced in the same instant.
//
// This equals what the meter produces, to the millisecond, when every
// change point falls on a poll tick (Start + k × PollInterval) and the
// poll interval divides the meter's window; a change point off the ticks
// is metered at the next tick instead, an error of less than one poll
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
			splitByTicks(s.PollInterval, a, b, weights, res.Usage)
		}
	}
	return res
}

// splitByTicks divides [a, b) among weights' tenants one poll interval at
// a time (pieces cut at multiples of tick), adding to usage.
func splitByTicks(tick, a, b time.Duration, weights map[string]int64, usage map[string]int64) {
	tenants := make([]string, 0, len(weights))
	for t := range weights {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	ws := make([]int64, len(tenants))
	for i, t := range tenants {
		ws[i] = max(1, weights[t])
	}
	add := func(d time.Duration, times int64) {
		for i, part := range apportion(int64(d/time.Millisecond), ws) {
			usage[tenants[i]] += part * times
		}
	}
	// Head: up to the first tick boundary at or after a.
	if r := a % tick; r != 0 {
		head := min(b, a-r+tick)
		add(head-a, 1)
		a = head
	}
	if n := int64((b - a) / tick); n > 0 {
		add(tick, n)
		a += time.Duration(n) * tick
	}
	if a < b {
		add(b-a, 1)
	}
}

// apportion splits total by weights (>= 1) with the largest-remainder
// method, remainder ties to the lower index, so the parts sum to total.
func apportion(total int64, weights []int64) []int64 {
	var sum int64
	for _, w := range weights {
		sum += w
	}
	parts := make([]int64, len(weights))
	rems := make([]int64, len(weights))
	left := total
	for i, w := range weights {
		parts[i] = total * w / sum
		rems[i] = total * w % sum
		left -= parts[i]
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rems {
			if rems[i] > rems[best] {
				best = i
			}
		}
		parts[best]++
		rems[best] = -1
	}
	return parts
}
