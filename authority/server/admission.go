package server

// Admission control for POST /v1/batches: a bound on the ingests that run
// at once and on how long a request waits for one of those slots. A
// request that gets no slot in time is answered 503 overloaded with
// Retry-After, before its body is read and without touching the store (it
// is not kept in the audit trail: that is a write, the very thing that is
// short). The agent retries a 503 after Retry-After, jittered, so a fleet
// draining at once after an outage is served in turns instead of queueing
// work the authority cannot finish before the agents' timeout, which they
// would then send again (docs/performance.md, "Overload").

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// Admission defaults. SQLite has one writer: every ingest's transaction
// waits its turn on one connection, and only verification (JSON, Ed25519)
// runs beside it, so a few ingests at once keep the writer busy and more
// only queue. PostgreSQL's pool has 10 connections (authority/store): more
// ingests than that wait for a connection inside the store, where no one
// can shed them. DefaultMaxWait keeps an admitted request's wait plus its
// ingest well inside the agent's 10 s timeout (reporter.DefaultTimeout),
// so an agent never gives up on work the authority took on.
const (
	DefaultMaxConcurrentSQLite   = 4
	DefaultMaxConcurrentPostgres = 10
	DefaultMaxWait               = 2 * time.Second
	DefaultRetryAfter            = time.Second
	// MaxAdmissionWait bounds Admission.MaxWait: half the agent's default
	// timeout.
	MaxAdmissionWait = 5 * time.Second
)

// Admission bounds concurrent ingests (the zero value: the defaults for
// the store's driver, DefaultAdmission).
type Admission struct {
	// MaxConcurrent is how many ingests run at once; 0: the driver's
	// default.
	MaxConcurrent int
	// MaxWait is how long a request waits for a slot before it is shed;
	// 0: DefaultMaxWait.
	MaxWait time.Duration
	// RetryAfter is what a shed request is told (whole seconds, at least
	// one); 0: DefaultRetryAfter.
	RetryAfter time.Duration
}

// DefaultAdmission is the admission for a store of driver.
func DefaultAdmission(driver string) Admission {
	n := DefaultMaxConcurrentSQLite
	if driver == store.DriverPostgres {
		n = DefaultMaxConcurrentPostgres
	}
	return Admission{MaxConcurrent: n, MaxWait: DefaultMaxWait, RetryAfter: DefaultRetryAfter}
}

// withDefaults fills a's zero fields from the driver's defaults and checks
// the rest.
func (a Admission) withDefaults(driver string) (Admission, error) {
	d := DefaultAdmission(driver)
	switch {
	case a.MaxConcurrent < 0:
		return a, fmt.Errorf("admission: negative max concurrent ingests %d", a.MaxConcurrent)
	case a.MaxWait < 0 || a.MaxWait > MaxAdmissionWait:
		return a, fmt.Errorf("admission: max wait %s is out of range [0, %s]", a.MaxWait, MaxAdmissionWait)
	case a.RetryAfter < 0:
		return a, fmt.Errorf("admission: negative retry-after %s", a.RetryAfter)
	}
	if a.MaxConcurrent == 0 {
		a.MaxConcurrent = d.MaxConcurrent
	}
	if a.MaxWait == 0 {
		a.MaxWait = d.MaxWait
	}
	if a.RetryAfter == 0 {
		a.RetryAfter = d.RetryAfter
	}
	a.RetryAfter = max(a.RetryAfter.Round(time.Second), time.Second)
	return a, nil
}

// admitter hands out the ingest slots.
type admitter struct {
	Admission
	slots chan struct{}
	// lastShedLog rate-limits the shed warning: under overload every
	// second request is shed, and one line a minute says so.
	mu          sync.Mutex
	lastShedLog time.Time
	shedSince   int // shed since the last line
}

func newAdmitter(a Admission) *admitter {
	return &admitter{Admission: a, slots: make(chan struct{}, a.MaxConcurrent)}
}

// acquire waits up to MaxWait for a slot; false: none came (or the client
// went away). release must follow a true.
func (a *admitter) acquire(ctx context.Context) bool {
	select {
	case a.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(a.MaxWait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (a *admitter) release() { <-a.slots }

// shedLogEvery is how often the shed warning is logged at most.
const shedLogEvery = time.Minute

// admit takes an ingest slot for r, or answers 503 overloaded and returns
// false. The caller releases the slot with s.adm.release().
func (s *Server) admit(w http.ResponseWriter, r *http.Request) bool {
	if s.adm.acquire(r.Context()) {
		return true
	}
	s.m.shed.Inc()
	now := s.clock.Now()
	s.adm.mu.Lock()
	s.adm.shedSince++
	n, logIt := s.adm.shedSince, now.Sub(s.adm.lastShedLog) >= shedLogEvery
	if logIt {
		s.adm.lastShedLog, s.adm.shedSince = now, 0
	}
	s.adm.mu.Unlock()
	if logIt {
		s.log.Warn("authority overloaded: batches answered 503 with Retry-After (the nodes send them again)",
			slog.Int("shed", n), slog.Int("max_concurrent", s.adm.MaxConcurrent),
			slog.Duration("max_wait", s.adm.MaxWait), slog.Duration("retry_after", s.adm.RetryAfter))
	}
	p := protocol.NewProblem(protocol.Overloaded, fmt.Sprintf(
		"%d batches are being ingested and none finished within %s; send this batch again after Retry-After",
		s.adm.MaxConcurrent, s.adm.MaxWait))
	p.RetryAfter = s.adm.RetryAfter
	s.writeProblem(w, p)
	return false
}
