// Package clock injects time so that the meter and the simulator run the
// same code in real time and in virtual time.
package clock

import (
	"sync"
	"time"
)

// Clock is the only way the agent reads time or waits.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once the clock reaches Now()+d.
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock with Go's monotonic reading.
type Real struct{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Virtual is a manually advanced clock. Its times carry no monotonic
// reading, so Sub is plain wall arithmetic, which is exact for it.
type Virtual struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewVirtual starts a virtual clock at t.
func NewVirtual(t time.Time) *Virtual { return &Virtual{now: t} }

func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

func (v *Virtual) After(d time.Duration) <-chan time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := v.now.Add(d)
	if d <= 0 {
		ch <- v.now
		return ch
	}
	v.waiters = append(v.waiters, waiter{at: at, ch: ch})
	return ch
}

// Set moves the clock to t (never backwards) and fires due waiters.
func (v *Virtual) Set(t time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.Before(v.now) {
		return
	}
	v.now = t
	kept := v.waiters[:0]
	for _, w := range v.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			kept = append(kept, w)
		}
	}
	v.waiters = kept
}

// Advance moves the clock forward by d.
func (v *Virtual) Advance(d time.Duration) { v.Set(v.Now().Add(d)) }

// Scaled runs virtual time at Speed times real time from Start for the
// first Fast of virtual time, then at real speed: a simulated node replays a
// scenario quickly and then keeps pace with the wall clock. Its times carry
// no monotonic reading; elapsed real time is measured from Origin.
type Scaled struct {
	start  time.Time
	origin time.Time
	speed  int64
	fast   time.Duration
}

// NewScaled maps real time since origin to virtual time since start.
func NewScaled(start, origin time.Time, speed int, fast time.Duration) *Scaled {
	if speed < 1 {
		speed = 1
	}
	return &Scaled{start: start.Round(0), origin: origin, speed: int64(speed), fast: fast}
}

func (s *Scaled) Now() time.Time { return s.at(time.Since(s.origin)) }

// at is the virtual time after real elapsed e.
func (s *Scaled) at(e time.Duration) time.Time {
	if e < 0 {
		e = 0
	}
	fastReal := s.fast / time.Duration(s.speed)
	if e <= fastReal {
		return s.start.Add(e * time.Duration(s.speed))
	}
	return s.start.Add(s.fast + (e - fastReal))
}

// After waits for virtual duration d at the current rate.
func (s *Scaled) After(d time.Duration) <-chan time.Time {
	out := make(chan time.Time, 1)
	time.AfterFunc(s.realFor(d), func() { out <- s.Now() })
	return out
}

// realFor is the real duration that virtual duration d takes from now at
// the current rate.
func (s *Scaled) realFor(d time.Duration) time.Duration {
	if time.Since(s.origin) < s.fast/time.Duration(s.speed) {
		return d / time.Duration(s.speed)
	}
	return d
}

func (Real) realFor(d time.Duration) time.Duration { return d }

// Timer waits on a clock again and again, for a loop that waits for one
// thing at a time (the agent's poll ticks). On a clock that runs on real
// timers (Real, Scaled) it is one reused runtime timer, whose channel the
// loop waits on directly: no goroutine or channel per wait, and one
// thread wake-up fewer at each tick than After. Other clocks (Virtual) get
// After. What the channel carries is the real time it fired, not the
// clock's: a caller reads the clock's time with Now.
type Timer struct {
	clk  Clock
	real realTimed
	t    *time.Timer
}

// realTimed is a clock whose waits are real timers: realFor is the real
// duration a wait of d on it takes from now.
type realTimed interface {
	realFor(d time.Duration) time.Duration
}

// NewTimer is a stopped Timer on clk.
func NewTimer(clk Clock) *Timer {
	tm := &Timer{clk: clk}
	tm.real, _ = clk.(realTimed)
	return tm
}

// Reset starts a wait of d on the clock, dropping a wait not yet received,
// and returns the channel it fires on.
func (t *Timer) Reset(d time.Duration) <-chan time.Time {
	if t.real == nil {
		return t.clk.After(d)
	}
	if t.t == nil {
		t.t = time.NewTimer(t.real.realFor(d))
	} else {
		t.t.Reset(t.real.realFor(d)) // since Go 1.23 no stale tick survives a Reset
	}
	return t.t.C
}

// Stop releases the timer.
func (t *Timer) Stop() {
	if t.t != nil {
		t.t.Stop()
	}
}
