package meter

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math/big"
	"math/bits"
	"slices"
)

// Exact splits of a shared unit.
//
// Each held interval d of a unit shared by several tenants gives tenant i
// exactly d·wᵢ/W ms (W the interval's summed weights): a rational. Rounding
// every interval on its own would lose up to a millisecond per interval and
// tenant, always to the same side (with three equal tenants one of them
// would get 334 ms of every second). Instead each tenant keeps, per (unit,
// window), the integer part of its exact share (whole) and the rest as an
// exact fraction below 1 ms (frac); the unit keeps the sum of the fractions
// (pending, an integer since the intervals' shares sum to d). When the
// window closes, pending is handed out one millisecond each to the tenants
// with the largest fractions (settle). So every tenant's record is its exact
// share rounded down or up, less than 1 ms from it, and the unit's usage
// sums to its busy time exactly. Equal fractions are ordered by a hash of
// the window, the unit and the tenant, not by name: which tenant gets the
// odd millisecond varies from window to window.

// addExact adds d·w/sum ms to t: the quotient to its whole milliseconds
// (t.ms), the remainder to frac, whose whole part then moves to t.ms too.
func (t *tenantAcc) addExact(d, w, sum int64) {
	hi, lo := bits.Mul64(uint64(d), uint64(w))
	q, rem := bits.Div64(hi, lo, uint64(sum)) // q <= d since w <= sum
	t.ms += int64(q)
	if rem == 0 {
		return
	}
	if t.frac == nil {
		t.frac = new(big.Rat)
	}
	var r big.Rat
	r.SetFrac(new(big.Int).SetUint64(rem), big.NewInt(sum))
	t.frac.Add(t.frac, &r)
	if t.frac.Cmp(ratOne) < 0 {
		return
	}
	// A sum of fractions below 1 each: at most a few whole milliseconds.
	n := new(big.Int).Quo(t.frac.Num(), t.frac.Denom())
	t.ms += n.Int64()
	t.frac.Sub(t.frac, new(big.Rat).SetInt(n))
}

var ratOne = big.NewRat(1, 1)

// shareExact splits d held ms of a shared unit between its tenants exactly
// (see above). Tenants are indexed in u.tenants by tis, in h.shares order.
func (u *unitAcc) shareExact(d int64, shares []share, tis []int) {
	var sum int64
	for _, s := range shares {
		sum += s.weight
	}
	u.pending += d
	for i, s := range shares {
		t := &u.tenants[tis[i]]
		before := t.ms
		t.addExact(d, s.weight, sum)
		u.pending -= t.ms - before
	}
}

// settle hands the unit's pending milliseconds to the tenants with the
// largest fractions, equal fractions ordered by tieKey, and clears the
// fractions. Called once, when the window is emitted.
func (u *unitAcc) settle(windowStart int64, uuid string) {
	if u.pending <= 0 {
		u.pending = 0
		return
	}
	cands := u.cands[:0]
	for i := range u.tenants {
		if f := u.tenants[i].frac; f != nil && f.Sign() > 0 {
			cands = append(cands, i)
		}
	}
	keys := make(map[int]uint64, len(cands))
	for _, i := range cands {
		keys[i] = tieKey(windowStart, uuid, u.tenants[i].tenant)
	}
	slices.SortFunc(cands, func(a, b int) int {
		if c := u.tenants[b].frac.Cmp(u.tenants[a].frac); c != 0 {
			return c
		}
		return cmp.Compare(keys[a], keys[b])
	})
	// pending is the sum of fractions each below 1, so fewer than
	// len(cands) of them: every one goes to a distinct tenant.
	for _, i := range cands[:min(int(u.pending), len(cands))] {
		u.tenants[i].ms++
	}
	for i := range u.tenants {
		u.tenants[i].frac = nil
	}
	u.pending = 0
	u.cands = cands
}

// tieKey orders equal fractions: a hash of the window's start, the unit and
// the tenant, so that no tenant is favoured by its name, and the same
// records come out of the same observations.
func tieKey(windowStart int64, uuid, tenant string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(windowStart))
	h.Write(b[:])
	h.Write([]byte(uuid))
	h.Write([]byte{0})
	h.Write([]byte(tenant))
	return h.Sum64()
}
