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
	// RetryAfter is the least a shed request is told to wait (whole
	// seconds, at least one); under a long line it is told more, up to
	// MaxRetryAfter; 0: DefaultRetryAfter.
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

// MaxRetryAfter bounds the Retry-After a shed request is told, however
// long the line (unless Admission.RetryAfter is longer).
const MaxRetryAfter = 30 * time.Second

// admitter hands out the ingest slots, and tells the requests it sheds
// when to come back.
//
// Fairness under overload: the slots' waiters are served in arrival order
// (a channel's blocked senders are), but a shed request used to wait out
// MaxWait, then be told Retry-After 1 like every other, and compete again
// with all of them: an unlucky node was shed many times in a row. Now
//   - a request that would wait longer than MaxWait by the measured pace is
//     shed at once instead of after MaxWait (it would not get a slot in time
//     anyway, and holding it only makes it later);
//   - each shed request is given the next place in a line of returns
//     spaced at the pace the authority finishes ingests, behind the
//     requests already waiting: Retry-After is when that place comes, so
//     shed nodes come back spread over the time it takes to serve them
//     instead of all at once, where most would be shed again.
//
// The pace is the time between two ingests finishing while requests wait
// (then it is the authority's throughput, not the arrival rate), averaged.
// Both are estimates: a wrong one sheds a request too early or tells it to
// wait a little long, never stores or loses anything.
type admitter struct {
	Admission
	slots chan struct{}

	mu      sync.Mutex
	waiting int           // requests waiting for a slot
	pace    time.Duration // average time between finished ingests while saturated (0: not measured)
	lastEnd time.Time     // when the last ingest finished
	line    time.Time     // the last place given to a shed request
	// lastShedLog rate-limits the shed warning: under overload every
	// second request is shed, and one line a minute says so.
	lastShedLog time.Time
	shedSince   int // shed since the last line
}

func newAdmitter(a Admission) *admitter {
	return &admitter{Admission: a, slots: make(chan struct{}, a.MaxConcurrent)}
}

// acquire waits up to MaxWait for a slot; false: none came, none would by
// the measured pace, or the client went away. release must follow a true.
func (a *admitter) acquire(ctx context.Context) bool {
	select {
	case a.slots <- struct{}{}:
		return true
	default:
	}
	a.mu.Lock()
	if a.pace > 0 && time.Duration(a.waiting+1)*a.pace > a.MaxWait {
		a.mu.Unlock()
		return false
	}
	a.waiting++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.waiting--
		a.mu.Unlock()
	}()
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

// paceWeight is the weight of the newest interval in the pace's moving
// average (1/paceWeight): a few dozen ingests set it.
const paceWeight = 16

func (a *admitter) release() {
	now := time.Now()
	a.mu.Lock()
	if a.waiting > 0 && !a.lastEnd.IsZero() {
		d := min(now.Sub(a.lastEnd), a.MaxWait)
		if a.pace == 0 {
			a.pace = d
		} else {
			a.pace += (d - a.pace) / paceWeight
		}
	}
	a.lastEnd = now
	a.mu.Unlock()
	<-a.slots
}

// retryAfter gives a shed request its place in the line of returns: one
// pace after the last place given, and no earlier than the requests
// waiting now are served. It is at least RetryAfter, at most
// MaxRetryAfter, in whole seconds (rounded up).
func (a *admitter) retryAfter(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pace == 0 {
		return a.RetryAfter
	}
	place := now.Add(time.Duration(a.waiting) * a.pace)
	if a.line.After(place) {
		place = a.line
	}
	a.line = place.Add(a.pace)
	d := a.line.Sub(now)
	d = (d + time.Second - 1).Truncate(time.Second)
	return min(max(d, a.RetryAfter), max(MaxRetryAfter, a.RetryAfter))
}

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
			slog.Duration("max_wait", s.adm.MaxWait), slog.Duration("min_retry_after", s.adm.RetryAfter))
	}
	p := protocol.NewProblem(protocol.Overloaded, fmt.Sprintf(
		"%d batches are being ingested and this one would not start within %s; send it again after Retry-After",
		s.adm.MaxConcurrent, s.adm.MaxWait))
	p.RetryAfter = s.adm.retryAfter(time.Now())
	s.writeProblem(w, p)
	return false
}
