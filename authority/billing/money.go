package billing

import (
	"errors"
	"math/bits"
	"strconv"
	"time"
)

// Bounds that validation enforces, so that no sum the engine keeps can
// overflow int64 (MaxFen × 10000 bp < 2^63) and a typing slip (a price
// in li instead of fen) is refused rather than billed.
const (
	// MaxPricePerHour is 1 000 000 CNY per GPU-hour.
	MaxPricePerHour Fen = 100_000_000
	// MaxFen bounds face values and caps: 10 000 000 000 CNY.
	MaxFen Fen = 1_000_000_000_000
	// MaxSliceDen bounds a record's slice denominator (MIG has 7 or 8).
	MaxSliceDen = 1000
)

const (
	msPerHour = 3_600_000
	// bpDen is 100% in basis points.
	bpDen = 10_000
)

// ErrOverflow is a product that does not fit int64 fen (a record of
// absurd length); validation bounds keep real usage far below it.
var ErrOverflow = errors.New("billing: amount overflows int64")

// CostDenominator is the unit of a cost carry: a remainder r stands for
// r / (3 600 000 × sliceDen) fen. Whole-GPU and profile-card pricing has
// sliceDen 1.
func CostDenominator(sliceDen int64) int64 { return msPerHour * sliceDen }

// InitialCostCarry is half a fen in the carry's unit: the running cost of
// a carry key then rounds half up, whatever the order of its records.
func InitialCostCarry(sliceDen int64) int64 { return CostDenominator(sliceDen) / 2 }

// Cost prices gpuMs at price fen per GPU-hour scaled by num/den, carrying
// the sub-fen remainder: with carry r (0 ≤ r < D, D = CostDenominator(den))
// the exact running amount is (r + price × ms × num) / D fen; Cost returns
// its whole fen and the new remainder. All inputs must be non-negative,
// 1 ≤ den and num ≤ den (validated by the callers).
func Cost(carry int64, price Fen, gpuMs, num, den int64) (Fen, int64, error) {
	q, r, err := carryDiv(carry, int64(price), gpuMs, num, CostDenominator(den))
	return Fen(q), r, err
}

// InitialSubsidyCarry is where a program's entitlement remainder starts
// for an (entity, year): half a fen (in 1/10000 fen) for half_up, zero for
// truncate.
func InitialSubsidyCarry(rounding string) int64 {
	if rounding == RoundHalfUp {
		return bpDen / 2
	}
	return 0
}

// Entitle is ratio × cost with the entitlement's carry (in 1/10000 fen):
// the whole fen of (carry + ratio × cost) / 10000 and the new remainder.
// With ratio ≤ 10000 the entitlement never exceeds cost.
func Entitle(carry int64, ratio BasisPoints, cost Fen) (Fen, int64, error) {
	q, r, err := carryDiv(carry, int64(ratio), int64(cost), 1, bpDen)
	if err == nil && Fen(q) > cost {
		// Unreachable for ratio ≤ 10000 and carry < 10000; kept so that
		// no caller can ever grant more than the cost.
		q = int64(cost)
	}
	return Fen(q), r, err
}

// carryDiv computes (carry + a×b×c) / d and its remainder exactly, in 128
// bits. Inputs are non-negative, d > 0 and carry < d.
func carryDiv(carry, a, b, c, d int64) (q, r int64, err error) {
	if carry < 0 || a < 0 || b < 0 || c < 0 || d <= 0 || carry >= d {
		return 0, 0, errors.New("billing: carryDiv: input out of range")
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	// (hi, lo) × c: hi×c must not overflow, nor its sum with the carry
	// out of lo×c.
	h1, l1 := bits.Mul64(lo, uint64(c))
	hh, hl := bits.Mul64(hi, uint64(c))
	if hh != 0 {
		return 0, 0, ErrOverflow
	}
	h2, k := bits.Add64(hl, h1, 0)
	if k != 0 {
		return 0, 0, ErrOverflow
	}
	l2, k := bits.Add64(l1, uint64(carry), 0)
	h2, k = bits.Add64(h2, 0, k)
	if k != 0 || h2 >= uint64(d) {
		return 0, 0, ErrOverflow // the quotient needs more than 64 bits
	}
	uq, ur := bits.Div64(h2, l2, uint64(d))
	if uq > 1<<63-1 {
		return 0, 0, ErrOverflow
	}
	return int64(uq), int64(ur), nil
}

// cst is China Standard Time, the programs' calendar: UTC+8 all year.
var cst = time.FixedZone("CST", 8*3600)

// Month is the calendar month of t in China Standard Time, "2006-01": the
// period of a cost carry.
func Month(t time.Time) string { return t.In(cst).Format("2006-01") }

// Year is the calendar year of t in China Standard Time: the period of a
// yearly cap.
func Year(t time.Time) int { return t.In(cst).Year() }

// FormatYuan writes fen as yuan with two decimals ("-12.05"), in integer
// arithmetic.
func FormatYuan(f Fen) string {
	n := int64(f)
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign, u = "-", uint64(-(n+1))+1 // MinInt64 too
	}
	frac := strconv.FormatUint(u%100, 10)
	if len(frac) < 2 {
		frac = "0" + frac
	}
	return sign + strconv.FormatUint(u/100, 10) + "." + frac
}
