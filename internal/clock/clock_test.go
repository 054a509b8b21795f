package clock

import (
	"testing"
	"time"
)

func TestScaledRunsFastThenRealTime(t *testing.T) {
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	s := NewScaled(start, time.Now(), 60, 2*time.Hour)
	cases := []struct {
		real time.Duration
		want time.Duration // virtual time since start
	}{
		{0, 0},
		{time.Second, time.Minute},
		{2 * time.Minute, 2 * time.Hour}, // the fast part ends
		{3 * time.Minute, 2*time.Hour + time.Minute}, // then real speed
		{-time.Second, 0}, // never before start
		{time.Hour, 2*time.Hour + time.Hour - 2*time.Minute},
	}
	for _, c := range cases {
		if got := s.at(c.real).Sub(start); got != c.want {
			t.Errorf("after %s real: virtual +%s, want +%s", c.real, got, c.want)
		}
	}
}

func TestVirtualAfterFiresOnSet(t *testing.T) {
	v := NewVirtual(time.Unix(0, 0))
	ch := v.After(time.Second)
	v.Advance(999 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	v.Advance(time.Millisecond)
	firedAt(t, ch, time.Unix(1, 0))
}

// firedAt requires ch to hold a value now, and that value to be want.
func firedAt(t *testing.T, ch <-chan time.Time, want time.Time) {
	t.Helper()
	select {
	case got := <-ch:
		if !got.Equal(want) {
			t.Errorf("fired at %s, want %s", got, want)
		}
	default:
		t.Fatal("did not fire at its time")
	}
}

func TestTimerWaitsOnTheClock(t *testing.T) {
	// A Scaled clock in its fast part: 1 h of virtual time is 1 ms real.
	s := NewScaled(time.Unix(0, 0), time.Now(), 3600_000, 24*time.Hour)
	tm := NewTimer(s)
	defer tm.Stop()
	for range 3 { // reused: each Reset fires once, after its own wait
		before := s.Now()
		select {
		case <-tm.Reset(time.Hour):
		case <-time.After(10 * time.Second):
			t.Fatal("a Scaled wait of 1 h at 3600000x did not fire within 10 s")
		}
		if got := s.Now().Sub(before); got < time.Hour {
			t.Fatalf("fired after %s of virtual time, want at least 1h", got)
		}
	}
	// A Virtual clock has no real timer: Reset waits on After.
	v := NewVirtual(time.Unix(0, 0))
	vt := NewTimer(v)
	ch := vt.Reset(time.Second)
	v.Advance(time.Second)
	firedAt(t, ch, time.Unix(1, 0))
}

func TestScaledAfterFires(t *testing.T) {
	s := NewScaled(time.Unix(0, 0), time.Now(), 3600_000, 24*time.Hour)
	select {
	case got := <-s.After(time.Hour):
		if got.Before(time.Unix(3600, 0)) {
			t.Errorf("fired at %s, before the wait ended", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not fire")
	}
}
