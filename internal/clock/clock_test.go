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
	select {
	case got := <-ch:
		if !got.Equal(time.Unix(1, 0)) {
			t.Errorf("fired at %s", got)
		}
	default:
		t.Fatal("did not fire at its time")
	}
}
