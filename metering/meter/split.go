package meter

import (
	"cmp"
	"encoding/binary"
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
	if rem != 0 {
		t.ms += t.frac.add(rem, uint64(sum))
	}
}

// frac is an exact fraction in [0, 1): num/den in machine words while
// they fit, which is every poll of a node whose shares' weights stay
// below about 2³² (the sum of a few processes' SM utilization, or their
// count), so the meter allocates nothing per poll for a shared unit. A
// sum whose common denominator would pass 64 bits moves it to big
// (exact, allocating) until the window is settled. The zero value is 0.
type frac struct {
	num, den uint64 // den is 0 only for 0 (num 0) and while big is set
	big      *big.Rat
}

// add adds rem/sum (0 < rem < sum) and returns the whole milliseconds that
// left the fraction: 0 or 1, since both parts are below 1.
func (f *frac) add(rem, sum uint64) int64 {
	if f.big == nil {
		if f.den == 0 {
			g := gcd(rem, sum)
			f.num, f.den = rem/g, sum/g
			return 0
		}
		if whole, ok := f.addWords(rem, sum); ok {
			return whole
		}
		f.big = f.rat()
		f.num, f.den = 0, 0
	}
	var r big.Rat
	r.SetFrac(new(big.Int).SetUint64(rem), new(big.Int).SetUint64(sum))
	f.big.Add(f.big, &r)
	if f.big.Cmp(ratOne) < 0 {
		return 0
	}
	f.big.Sub(f.big, ratOne)
	return 1
}

// addWords is add in machine words over the least common denominator;
// ok is false when a product would pass 64 bits (f is then unchanged).
func (f *frac) addWords(rem, sum uint64) (whole int64, ok bool) {
	g := gcd(f.den, sum)
	hi, lcm := bits.Mul64(f.den, sum/g)
	hi1, a := bits.Mul64(f.num, sum/g)
	hi2, b := bits.Mul64(rem, f.den/g)
	n, carry := bits.Add64(a, b, 0)
	if hi|hi1|hi2|carry != 0 {
		return 0, false
	}
	if n >= lcm { // n < 2·lcm: each part is below lcm
		n -= lcm
		whole = 1
	}
	if n == 0 {
		f.num, f.den = 0, 0
		return whole, true
	}
	g = gcd(n, lcm)
	f.num, f.den = n/g, lcm/g
	return whole, true
}

func (f *frac) positive() bool {
	if f.big != nil {
		return f.big.Sign() > 0
	}
	return f.num > 0
}

// rat is f as a new big.Rat.
func (f *frac) rat() *big.Rat {
	if f.big != nil {
		return new(big.Rat).Set(f.big)
	}
	return new(big.Rat).SetFrac(new(big.Int).SetUint64(f.num), new(big.Int).SetUint64(max(f.den, 1)))
}

// cmp compares f and o exactly: by 128-bit cross products in words.
func (f *frac) cmp(o *frac) int {
	if f.big != nil || o.big != nil {
		return f.rat().Cmp(o.rat())
	}
	h1, l1 := bits.Mul64(f.num, max(o.den, 1))
	h2, l2 := bits.Mul64(o.num, max(f.den, 1))
	return cmp.Or(cmp.Compare(h1, h2), cmp.Compare(l1, l2))
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
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
		if u.tenants[i].frac.positive() {
			cands = append(cands, i)
		}
	}
	for _, i := range cands {
		u.tenants[i].tie = tieKey(windowStart, uuid, u.tenants[i].tenant)
	}
	slices.SortFunc(cands, func(a, b int) int {
		if c := u.tenants[b].frac.cmp(&u.tenants[a].frac); c != 0 {
			return c
		}
		return cmp.Compare(u.tenants[a].tie, u.tenants[b].tie)
	})
	// pending is the sum of fractions each below 1, so fewer than
	// len(cands) of them: every one goes to a distinct tenant.
	for _, i := range cands[:min(int(u.pending), len(cands))] {
		u.tenants[i].ms++
	}
	for i := range u.tenants {
		u.tenants[i].frac = frac{}
	}
	u.pending = 0
	u.cands = cands
}

// tieKey orders equal fractions: a hash of the window's start, the unit and
// the tenant, so that no tenant is favoured by its name, and the same
// records come out of the same observations. The hash is 64-bit FNV-1a of
// the start (8 bytes, big-endian), the unit, a 0 byte and the tenant,
// written out so that it allocates nothing.
func tieKey(windowStart int64, uuid, tenant string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(windowStart))
	for _, c := range b {
		h = (h ^ uint64(c)) * prime
	}
	for i := range len(uuid) {
		h = (h ^ uint64(uuid[i])) * prime
	}
	h *= prime // the 0 byte
	for i := range len(tenant) {
		h = (h ^ uint64(tenant[i])) * prime
	}
	return h
}
