package config

import (
	"fmt"
	"time"
)

// Admission bounds how many batches the authority ingests at once and how
// long a batch waits for its turn before it is answered 503 overloaded
// with Retry-After (authority/server/admission.go). The defaults: 2 s of
// waiting, a Retry-After of at least 1 s (retry_after is the least a shed
// batch is told; a longer line of shed batches tells each more, up to
// 30 s), and max_concurrent 0, which takes the server's
// default for the store's driver: 4 at once on SQLite (one writer), 10 on
// PostgreSQL (the store's pool). A zero max_wait or retry_after is the
// server's default too.
type Admission struct {
	MaxConcurrent int           `yaml:"max_concurrent"`
	MaxWait       time.Duration `yaml:"max_wait"`
	RetryAfter    time.Duration `yaml:"retry_after"`
}

// Limits of the admission section. MaxAdmissionWait is half the agent's
// default 10 s timeout, so a batch the authority takes on is answered
// before the agent gives up on it.
const (
	MaxAdmissionConcurrent = 1000
	MaxAdmissionWait       = 5 * time.Second
	MaxAdmissionRetryAfter = 10 * time.Minute
)

// validate checks the admission section; paths start with "admission".
func (a Admission) validate() []invalid {
	var out []invalid
	bad := func(msg string, key string) { out = append(out, invalid{[]string{"admission", key}, msg}) }
	if a.MaxConcurrent < 0 || a.MaxConcurrent > MaxAdmissionConcurrent {
		bad(fmt.Sprintf("%d is out of range [0, %d] (0: the store's default)", a.MaxConcurrent, MaxAdmissionConcurrent), "max_concurrent")
	}
	if a.MaxWait < 0 || a.MaxWait > MaxAdmissionWait {
		bad(fmt.Sprintf("%s is out of range [0, %s]: a batch must be answered well before the agent's 10 s timeout", a.MaxWait, MaxAdmissionWait), "max_wait")
	}
	if a.RetryAfter < 0 || a.RetryAfter > MaxAdmissionRetryAfter || a.RetryAfter%time.Second != 0 {
		bad(fmt.Sprintf("%s must be whole seconds in [0, %s] (0: 1s)", a.RetryAfter, MaxAdmissionRetryAfter), "retry_after")
	}
	return out
}
