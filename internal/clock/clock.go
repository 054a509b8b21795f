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

// Scaled runs virtual time at Speed times real time from Start: the
// simulated devices' clock in the real-time demo. Its times carry no
// monotonic reading; elapsed real time is measured monotonically.
type Scaled struct {
	start  time.Time
	origin time.Time
	speed  int64
}

// NewScaled starts virtual time at start, advancing speed× real time.
func NewScaled(start time.Time, speed int) *Scaled {
	if speed < 1 {
		speed = 1
	}
	return &Scaled{start: start.Round(0), origin: time.Now(), speed: int64(speed)}
}

func (s *Scaled) Now() time.Time {
	return s.start.Add(time.Since(s.origin) * time.Duration(s.speed))
}

func (s *Scaled) After(d time.Duration) <-chan time.Time {
	out := make(chan time.Time, 1)
	t := time.NewTimer(d / time.Duration(s.speed))
	go func() { <-t.C; out <- s.Now() }()
	return out
}
