package server

import (
	"fmt"
	"time"
)

// ChinaStandardTime is UTC+8 without daylight saving: the calendar of the
// voucher programs (docs/billing.md), and of dates given without a time.
var ChinaStandardTime = time.FixedZone("CST", 8*60*60)

// ParseBillingTime parses an RFC 3339 time, or a YYYY-MM-DD date meaning
// that day's midnight in China Standard Time (UTC+8).
func ParseBillingTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, ChinaStandardTime); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a YYYY-MM-DD date", s)
}

// ParseBillingPeriod parses from and to with ParseBillingTime; to must be
// after from.
func ParseBillingPeriod(from, to string) (time.Time, time.Time, error) {
	if from == "" || to == "" {
		return time.Time{}, time.Time{}, fmt.Errorf("from and to are required (RFC 3339 or YYYY-MM-DD, China Standard Time)")
	}
	f, err := ParseBillingTime(from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("from: %w", err)
	}
	t, err := ParseBillingTime(to)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("to: %w", err)
	}
	if !t.After(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("to %s is not after from %s", to, from)
	}
	return f, t, nil
}
