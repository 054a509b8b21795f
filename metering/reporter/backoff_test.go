package reporter

import (
	"net/http"
	"testing"
	"time"
)

func TestJitteredStaysInBounds(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		attempt  int
		lo, hi   time.Duration
	}{
		{name: "first attempt is min", min: 500 * time.Millisecond, max: 30 * time.Second, attempt: 0, lo: 500 * time.Millisecond, hi: 500 * time.Millisecond},
		{name: "doubles with jitter", min: 500 * time.Millisecond, max: 30 * time.Second, attempt: 3, lo: 2 * time.Second, hi: 4 * time.Second},
		{name: "capped at max", min: 500 * time.Millisecond, max: 30 * time.Second, attempt: 20, lo: 15 * time.Second, hi: 30 * time.Second},
		{name: "huge attempt does not overflow", min: time.Second, max: time.Minute, attempt: 1000, lo: 30 * time.Second, hi: time.Minute},
		{name: "min equals max", min: time.Second, max: time.Second, attempt: 5, lo: time.Second, hi: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 200 {
				if d := jittered(tc.min, tc.max, tc.attempt); d < tc.lo || d > tc.hi {
					t.Fatalf("jittered(%s, %s, %d) = %s, want %s..%s", tc.min, tc.max, tc.attempt, d, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		header string
		want   time.Duration
	}{
		{name: "seconds on 429", status: 429, header: "7", want: 7 * time.Second},
		{name: "seconds on 503", status: 503, header: "2", want: 2 * time.Second},
		{name: "seconds on 425 (window not ended)", status: 425, header: "30", want: 30 * time.Second},
		{name: "HTTP date", status: 429, header: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "date in the past", status: 429, header: now.Add(-time.Minute).Format(http.TimeFormat), want: 0},
		{name: "bounded", status: 429, header: "86400", want: MaxRetryAfter},
		{name: "garbage", status: 429, header: "soon", want: 0},
		{name: "negative", status: 429, header: "-3", want: 0},
		{name: "ignored on 500", status: 500, header: "7", want: 0},
		{name: "absent", status: 429, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
			if tc.header != "" {
				resp.Header.Set("Retry-After", tc.header)
			}
			if got := retryAfter(resp, now); got != tc.want {
				t.Errorf("retryAfter(%d, %q) = %s, want %s", tc.status, tc.header, got, tc.want)
			}
		})
	}
}

func TestSpreadRetryAfter(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 200 {
		d := spreadRetryAfter(4 * time.Second)
		if d < 4*time.Second || d > 6*time.Second {
			t.Fatalf("spreadRetryAfter(4s) = %s, want 4s..6s", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("200 draws gave %d distinct waits: not spread", len(seen))
	}
	if d := spreadRetryAfter(0); d != 0 {
		t.Errorf("spreadRetryAfter(0) = %s, want 0", d)
	}
}
