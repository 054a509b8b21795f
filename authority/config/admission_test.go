package config

import (
	"strings"
	"testing"
	"time"
)

func TestAdmission(t *testing.T) {
	c, err := Parse("cfg.yaml", []byte("admission:\n  max_concurrent: 8\n  max_wait: 500ms\n  retry_after: 3s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Admission{MaxConcurrent: 8, MaxWait: 500 * time.Millisecond, RetryAfter: 3 * time.Second}); c.Admission != want {
		t.Errorf("admission %+v, want %+v", c.Admission, want)
	}
	if c, err := Parse("cfg.yaml", nil); err != nil || c.Admission != (Admission{MaxWait: 2 * time.Second, RetryAfter: time.Second}) {
		t.Errorf("default admission %+v, %v: want max_concurrent 0 (the server's default for the driver), 2s, 1s", c.Admission, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"admission:\n  max_concurrent: -1\n", "cfg.yaml:2: admission.max_concurrent: -1 is out of range [0, 1000]"},
		{"admission:\n  max_concurrent: 5000\n", "cfg.yaml:2: admission.max_concurrent: 5000 is out of range"},
		{"admission:\n  max_wait: 10s\n", "cfg.yaml:2: admission.max_wait: 10s is out of range [0, 5s]"},
		{"admission:\n  max_wait: -1s\n", "cfg.yaml:2: admission.max_wait: -1s is out of range"},
		{"admission:\n  retry_after: 1500ms\n", "cfg.yaml:2: admission.retry_after: 1.5s must be whole seconds"},
		{"admission:\n  retry_after: 1h\n", "cfg.yaml:2: admission.retry_after: 1h0m0s must be whole seconds in [0, 10m0s]"},
		{"admission:\n  max_waits: 1s\n", "cfg.yaml:2: admission.max_waits: unknown field"},
	} {
		if _, err := Parse("cfg.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
