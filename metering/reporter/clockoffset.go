package reporter

import (
	"log/slog"
	"time"
)

// DefaultMaxClockOffset is Options.MaxClockOffset's default. The agent
// closes a window when its own clock reaches the window's end and sends it
// at once, so a clock ahead of the authority's by more than the time a
// batch takes to arrive makes fresh windows "window-not-ended" (held, sent
// again later), and one far ahead "future-window". NTP keeps hosts within
// milliseconds; 2s is well above that and above what the 1-second Date
// header can measure (its estimate is within ±0.5s plus half the round
// trip), so an offset past it is a clock that is not synchronised, found
// long before the authority's own tolerance (5 minutes) refuses anything.
const DefaultMaxClockOffset = 2 * time.Second

// ClockSource names where Stats.ClockOffset came from.
const (
	ClockSourceProblem = "authority_time" // a problem's authority_time: milliseconds
	ClockSourceDate    = "date"           // the HTTP Date header: whole seconds
)

// observeClock estimates the authority's clock minus the local one from an
// answer, from the most precise source it carries: a problem's
// authority_time, else the Date header. The local time of the answer is
// taken as the midpoint of the exchange. A Date estimate (the header is
// truncated to the second: the authority's time lies in [date, date+1s))
// replaces a precise estimate only when the two disagree, so a precise
// offset is not overwritten by a coarse one that agrees with it.
func (r *Reporter) observeClock(a answer) {
	if a.sent.IsZero() || a.received.IsZero() {
		return
	}
	mid := a.sent.Add(a.received.Sub(a.sent) / 2)
	var off time.Duration
	var src string
	switch {
	case a.problem.AuthorityTime != nil && !a.problem.AuthorityTime.IsZero():
		off, src = a.problem.AuthorityTime.Sub(mid), ClockSourceProblem
	case !a.date.IsZero():
		// The offset lies in [date - received, date + 1s - sent].
		lo, hi := a.date.Sub(a.received), a.date.Add(time.Second).Sub(a.sent)
		r.mu.Lock()
		keep := r.stats.ClockOffsetSource == ClockSourceProblem && r.stats.ClockOffset >= lo && r.stats.ClockOffset <= hi
		r.mu.Unlock()
		if keep {
			return
		}
		off, src = a.date.Add(500*time.Millisecond).Sub(mid), ClockSourceDate
	default:
		return
	}
	r.mu.Lock()
	was, wasOff := r.stats.ClockOffsetKnown, r.stats.ClockOffset
	r.stats.ClockOffset, r.stats.ClockOffsetSource, r.stats.ClockOffsetKnown = off, src, true
	r.mu.Unlock()
	max := r.opts.MaxClockOffset
	over, wasOver := abs(off) > max, was && abs(wasOff) > max
	switch {
	case over && !wasOver:
		r.log.Warn("the local clock differs from the authority's: check this host's time synchronisation (chronyc tracking, timedatectl); fresh windows are held as window-not-ended while it is ahead",
			slog.Duration("offset", off), slog.String("source", src), slog.Duration("max_clock_offset", max))
	case !over && wasOver:
		r.log.Info("the local clock agrees with the authority's again", slog.Duration("offset", off), slog.String("source", src))
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
