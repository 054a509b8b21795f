package meter

import (
	"math/bits"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
)

// part is one piece of a held interval that goes to one record: a tenant's
// (ti >= 0, an index in u.tenants; si its index in the held shares) or idle
// (ti < 0) time in one window.
type part struct {
	u      *unitAcc
	ti, si int
	ms     int64
	// split: the part of a shared unit, whose ms only weigh its readings
	// (its time was added exactly by shareExact).
	split bool
}

// fill accounts [a, p) for every unit the held state or the open window
// knows. next is the observation taken at p (nil at Stop): it ends the
// energy counter's interval. Windows are added as far as p reaches; the
// caller closes those that end by p.
func (m *Meter) fill(a, p int64, next []attribution.Observation) {
	if p <= a {
		return
	}
	for last := m.wins[len(m.wins)-1]; last.end < p; last = m.wins[len(m.wins)-1] {
		m.wins = append(m.wins, m.newWindow(last.end, last.end+m.winMs))
	}
	// Known in the open window but not in the latest observation: absent
	// until it reappears, and forgotten after this window.
	w0 := m.wins[0]
	for uuid, u := range w0.units {
		if m.held[uuid] == nil {
			u.gaps[gapAbsent] += min(p, w0.end) - a
		}
	}
	for _, h := range m.held {
		m.fillUnit(h, a, p, next)
	}
}

// fillUnit accounts [a, p) of one held unit: held until a+MaxHold, a
// no_sample gap after, split at window boundaries.
func (m *Meter) fillUnit(h *heldUnit, a, p int64, next []attribution.Observation) {
	hold := min(p, a+m.holdMs)
	m.parts = m.parts[:0]
	for _, w := range m.wins {
		u, _ := m.unitIn(w, &h.info)
		if s, e := max(a, w.start), min(hold, w.end); s < e {
			m.holdPart(h, u, e-s)
		}
		if s, e := max(hold, w.start), min(p, w.end); s < e {
			u.gaps[gapNoSample] += e - s
		}
	}

	delta, known := m.energyDelta(h, next)
	if known {
		// The interval's energy is spread over all of it in proportion to
		// time; the last weight is the no_sample part, whose energy is
		// dropped rather than given to anyone.
		m.weights = m.weights[:0]
		for i := range m.parts {
			m.weights = append(m.weights, m.parts[i].ms)
		}
		m.weights = append(m.weights, p-hold)
		m.amounts = apportion(delta, m.weights, m.amounts, &m.rems)
	}
	others := len(h.shares) - 1
	for i := range m.parts {
		pt := &m.parts[i]
		var e int64
		if known {
			e = m.amounts[i]
		}
		if pt.ti < 0 {
			pt.u.idle.add(pt.ms, h.util, e, known)
			continue
		}
		t := &pt.u.tenants[pt.ti]
		if pt.split {
			t.addReadings(pt.ms, h.util, e, known)
		} else {
			t.add(pt.ms, h.util, e, known)
		}
		if pt.ms >= t.methodMs {
			t.method, t.methodMs = h.shares[pt.si].method, pt.ms
		}
		if others > 0 {
			t.sharedWith = max(t.sharedWith, others)
			if h.splitRule != "" {
				t.splitRule = h.splitRule
			}
		}
	}
}

// holdPart records d held milliseconds of h in u: a lost gap directly, idle
// and usage as parts (they still need their energy).
func (m *Meter) holdPart(h *heldUnit, u *unitAcc, d int64) {
	switch {
	case h.lost:
		u.gaps[gapLost] += d
	case len(h.shares) == 0:
		m.parts = append(m.parts, part{u: u, ti: -1, ms: d})
	case len(h.shares) == 1:
		m.parts = append(m.parts, part{u: u, ti: u.tenant(h.shares[0].tenant), ms: d})
	default:
		// The time is split exactly per window (split.go). The integer
		// parts below only weigh the interval's utilization and energy
		// between the tenants; every tenant gets a part, even of 0 ms, so
		// that its method and sharing are recorded.
		m.weights = m.weights[:0]
		m.tis = m.tis[:0]
		for _, s := range h.shares {
			m.weights = append(m.weights, s.weight)
			m.tis = append(m.tis, u.tenant(s.tenant))
		}
		u.shareExact(d, h.shares, m.tis)
		m.amounts = apportion(d, m.weights, m.amounts, &m.rems)
		for si, ms := range m.amounts {
			m.parts = append(m.parts, part{u: u, ti: m.tis[si], si: si, ms: ms, split: true})
		}
	}
}

// energyDelta is the counter's increase from h's baseline to the unit's
// reading in next; known only when both ends were read. A counter that went
// backwards (driver reload) counts as 0.
func (m *Meter) energyDelta(h *heldUnit, next []attribution.Observation) (int64, bool) {
	if next == nil || h.lost || h.energy == device.Unknown {
		return 0, false
	}
	i, ok := m.next[h.info.uuid]
	if !ok {
		return 0, false
	}
	o := &next[i]
	if o.Lost() || o.Unit.EnergyMillijoules < 0 {
		return 0, false
	}
	return max(o.Unit.EnergyMillijoules-h.energy, 0), true
}

// apportion splits total (>= 0) into parts proportional to weights (>= 0,
// not all 0) by the largest-remainder method, remainder ties to the lower
// index, so the parts sum to total exactly. It reuses out and *rems.
// Products are taken in 128 bits, so no input overflows.
func apportion(total int64, weights, out []int64, rems *[]uint64) []int64 {
	var sum uint64
	for _, w := range weights {
		sum += uint64(w)
	}
	out = out[:0]
	r := (*rems)[:0]
	left := total
	for _, w := range weights {
		hi, lo := bits.Mul64(uint64(total), uint64(w))
		q, rem := bits.Div64(hi, lo, sum) // q <= total since w <= sum: no overflow
		out = append(out, int64(q))
		r = append(r, rem)
		left -= int64(q)
	}
	// left < len(weights), and more than left remainders are non-zero.
	for ; left > 0; left-- {
		best := 0
		for i := 1; i < len(r); i++ {
			if r[i] > r[best] {
				best = i
			}
		}
		out[best]++
		r[best] = 0
	}
	*rems = r
	return out
}
