package inventory

import (
	"math"
	"math/bits"
)

// Power checks compare products of two int64s in 128 bits (math/bits), so
// that no record, however long or however much energy it claims, can wrap
// a comparison around: a record is measured in ms and mJ, and a forged one
// may carry any int64.

// MaxEnergyMillijoules is the most energy the GPU can draw in windowMillis
// at its maximum power: max power (mW) × window (ms) / 1000, rounded up so
// that an honest record at full power is never above it; math.MaxInt64
// where the product does not fit, 0 for a window of 0 ms or less.
func (m Model) MaxEnergyMillijoules(windowMillis int64) int64 {
	if windowMillis <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(m.MaxPowerMilliwatts), uint64(windowMillis))
	if hi >= 1000 { // the quotient would not fit in 64 bits
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, 1000)
	if r > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// AtOrBelowIdle says whether energyMillijoules drawn over millis is a mean
// power at or below the model's idle floor: energy_mJ × 1000 ≤ floor_mW ×
// millis, exactly. Such usage says the GPU did no work. It is false where
// the answer is unknown: energy not reported (negative) or no time.
func (m Model) AtOrBelowIdle(energyMillijoules, millis int64) bool {
	if energyMillijoules < 0 || millis <= 0 {
		return false
	}
	eHi, eLo := bits.Mul64(uint64(energyMillijoules), 1000)
	fHi, fLo := bits.Mul64(uint64(m.IdleFloorMilliwatts), uint64(millis))
	return eHi < fHi || (eHi == fHi && eLo <= fLo)
}
