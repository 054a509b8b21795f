package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// ErrBlocked: the authority cannot accept this spool's next batch until an
// operator acts (a batch was dead-lettered, the authority lost or holds
// data this spool does not, or another copy of the node signs with its
// key); Flush returns it rather than wait.
var ErrBlocked = errors.New("delivery blocked until an operator acts")

// ErrHeld: the authority holds the next batch back for a reason an
// operator fixes at the authority (protocol.Held: an unregistered key or
// GPU, ...); the batch is kept and sent again. Flush returns it rather
// than wait; a held refusal that time fixes (window-not-ended,
// future-window) is waited for.
var ErrHeld = errors.New("delivery held until the authority accepts the batch")

// Stats describe delivery for metrics and alerts.
type Stats struct {
	SentBatches int64 // batches answered 200 (duplicates included)
	SentRecords int64
	Duplicates  int64 // answered duplicate: the authority had it (a lost answer)
	// AckedHead is the spool's acknowledged mark, SealedHead its highest
	// sealed sequence; AuthorityHead the last head the authority reported.
	AckedHead, SealedHead, AuthorityHead uint64
	LastSuccess                          time.Time // last 200; zero: none yet
	// ConsecutiveFailures counts failed sends and head requests since the
	// last 200; FailedAttempts every transient failure, retries included.
	ConsecutiveFailures int64
	FailedAttempts      int64
	DeadLetters         int64 // batches this reporter dead-lettered (Forks included)
	Forks               int64
	// Blocked: see ErrBlocked; BlockedReason says why.
	Blocked       bool
	BlockedReason string
	// Held: the authority refused the lowest batch with a held cause
	// (protocol.Held, or Problem.Hold): the batch is kept and sent again
	// about every RetryWaitMax (or after Retry-After) until accepted.
	// HeldCause is the cause, HeldSince when the hold began.
	Held      bool
	HeldCause string
	HeldSince time.Time
	// SecondSigner: the authority answered second-signer: another copy of
	// this node (a cloned image, a restored disk) signs with its key and
	// the authority kept the other copy's chain. Blocked is set too.
	SecondSigner bool
	// Instance is the sealer's instance id (protocol.Batch.Instance).
	Instance string
	// ClockOffset is the authority's clock minus Options.Clock, from the
	// last answer that told it (ClockOffsetKnown), measured from
	// ClockOffsetSource (ClockSourceProblem or ClockSourceDate).
	ClockOffset       time.Duration
	ClockOffsetKnown  bool
	ClockOffsetSource string
	// LastError is the last failure as "<status> <cause>: <detail>" or
	// "network: ..."; LastErrorCause its problem cause, "network", or
	// "status <n>" for an answer without a problem body.
	LastError      string
	LastErrorCause string

	// The authority's verifiable log (logcheck.go). LogVerifyFailures
	// counts failed checks by reason (LogSignature, ...); LogInconsistent
	// is set while delivery is held on a log conflict (LogConflict says
	// what), which only gpumeter spool accept-log ends; LogCheckpointSize
	// is the size of the newest checkpoint verified.
	LogVerifyFailures map[string]int64
	LogInconsistent   bool
	LogConflict       string
	LogCheckpointSize uint64
	// Recoveries counts restored authorities sent again what they lost
	// (RecoveredBatches batches); LostRange is "first..last" while the
	// authority lost seqs this spool no longer retains.
	Recoveries       int64
	RecoveredBatches int64
	LostRange        string
}

// Reporter delivers one node's batches. Run and Flush may be called
// concurrently: their passes serialize.
type Reporter struct {
	opts       Options
	baseURL    string
	batchesURL string
	headURL    string
	client     *http.Client
	clock      clock.Clock
	log        *slog.Logger
	notify     chan struct{}
	wake       chan struct{}

	passMu   sync.Mutex // held for a whole pass; guards the fields below
	needHead bool       // ask GET head before the next send
	ahead    bool       // the authority holds more than this spool sealed: neither seal nor send
	// sticky, while set, is the spool's state when a fork or second-signer
	// blocked delivery: the authority's head cannot end such a block, only
	// a change of the spool (a requeue or re-anchor) or a restart can.
	sticky *spoolMark
	// heldRead: the authority refused the signed head read (401/403):
	// Stats.Held, until a read is answered.
	heldRead bool
	// logV verifies checkpoints with the key logVKey (logcheck.go).
	logV    *tlog.Verifier
	logVKey string

	mu    sync.Mutex // guards stats
	stats Stats
}

// New checks opts and builds the Reporter and its HTTP client; it sends
// nothing. Unreadable or invalid CA and certificate files are errors
// naming the file.
func New(opts Options) (*Reporter, error) {
	opts.setDefaults()
	u, err := opts.validate()
	if err != nil {
		return nil, fmt.Errorf("new reporter: %w", err)
	}
	cfg, err := tlsConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("new reporter for %s: %w", u.Redacted(), err)
	}
	r := &Reporter{
		opts:       opts,
		baseURL:    u.String(),
		batchesURL: u.String() + "/v1/batches",
		headURL:    u.String() + "/v1/nodes/" + url.PathEscape(opts.Node) + "/head",
		clock:      opts.Clock,
		log:        opts.Log.With(slog.String("authority", u.Redacted()), slog.String("node", opts.Node)),
		notify:     make(chan struct{}, 1),
		wake:       make(chan struct{}, 1),
		needHead:   true,
	}
	r.stats.Instance = opts.Sealer.Instance()
	r.client = r.newClient(cfg)
	return r, nil
}

// Notify tells the reporter that records were appended; it never blocks.
func (r *Reporter) Notify() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Wake cuts a blocked or held wait short: the next pass starts at once
// (after an operator acted, for example). It never blocks.
func (r *Reporter) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then returns nil; it returns an error
// only when the spool is closed under it.
func (r *Reporter) Run(ctx context.Context) error {
	for {
		res, err := r.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		switch res.kind {
		case progressed:
			continue
		case idle:
			select {
			case <-ctx.Done():
				return nil
			case <-r.notify:
			}
		case backoff:
			// New records do not end an outage: Notify does not cut the
			// wait short (its signal stays buffered for later).
			select {
			case <-ctx.Done():
				return nil
			case <-r.clock.After(res.wait):
			case <-r.wake:
			}
		}
	}
}

// Flush seals and sends until nothing is pending or unacknowledged. It
// returns ErrBlocked (wrapped, with the reason) when waiting cannot help,
// and ctx's error, with what is left, when ctx ends first.
func (r *Reporter) Flush(ctx context.Context) error {
	for {
		res, err := r.pass(ctx)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return r.undelivered(ctx.Err())
		}
		switch res.kind {
		case idle:
			return nil
		case progressed:
			continue
		case backoff:
			if st := r.Stats(); st.Blocked {
				return fmt.Errorf("flush to %s: %w: %s", r.batchesURL, ErrBlocked, st.BlockedReason)
			} else if st.Held && !heldByTime(st.HeldCause) {
				return fmt.Errorf("flush to %s: %w: %s (%s)", r.batchesURL, ErrHeld, st.LastError, heldAction(st.HeldCause, r.opts.Node, st.Instance))
			}
			select {
			case <-ctx.Done():
				return r.undelivered(ctx.Err())
			case <-r.clock.After(res.wait):
			}
		}
	}
}

func (r *Reporter) undelivered(err error) error {
	st := r.opts.Spool.Stats()
	return fmt.Errorf("flush to %s: %d records pending, %d batches unacknowledged: %w",
		r.batchesURL, st.PendingRecords, st.UnackedBatches, err)
}

// Stats returns a snapshot.
func (r *Reporter) Stats() Stats {
	r.mu.Lock()
	st := r.stats
	logStats(&st)
	r.mu.Unlock()
	st.AckedHead, st.SealedHead, _ = r.opts.Spool.Head()
	return st
}

type resultKind int

const (
	idle       resultKind = iota // nothing pending or unacknowledged
	progressed                   // something was delivered or settled: go on
	backoff                      // failed or blocked: wait before the next pass
)

type result struct {
	kind resultKind
	wait time.Duration
}

// pass does one step: reconcile if needed, seal up to MaxInFlight, send
// the lowest unacknowledged batch. Its error is fatal (spool closed).
func (r *Reporter) pass(ctx context.Context) (result, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	if r.opts.Spool.LogConflict() != "" {
		r.logHeld()
		return r.blockedWait(), nil
	}
	if res, ok := r.anchorIfNeeded(ctx); !ok {
		return res, nil
	}
	if r.sticky != nil {
		m, err := r.mark(ctx)
		if err != nil {
			return r.localFailure(ctx, "read the spool's state", err)
		}
		if m == *r.sticky {
			return r.blockedWait(), nil
		}
		r.log.Info("the spool changed while delivery was blocked (requeue or re-anchor): asking the authority's head and trying again")
		r.sticky = nil
		r.unblock()
		r.needHead = true
	}
	// While blocked, every pass asks the head (a cheap signed read) and
	// sends nothing unless the spool continues the authority's chain
	// again: so a blocked reporter refuses, and dead-letters, nothing more.
	if r.needHead || r.Stats().Blocked {
		if res, ok, err := r.reconcile(ctx); !ok || err != nil {
			return res, err
		}
	}
	if r.ahead {
		return r.blockedWait(), nil
	}
	if err := r.sealUpTo(ctx); err != nil {
		return r.localFailure(ctx, "seal", err)
	}
	bs, err := r.opts.Spool.Unacked(ctx, 1)
	if err != nil {
		return r.localFailure(ctx, "list unacknowledged batches", err)
	}
	if len(bs) == 0 {
		return result{kind: idle}, nil
	}
	return r.send(ctx, bs[0])
}

// sealUpTo seals pending records while fewer than MaxInFlight batches are
// unacknowledged: beyond that the backlog stays pending, mergeable.
func (r *Reporter) sealUpTo(ctx context.Context) error {
	seal := func(first uint64, prev string, recs []protocol.Record) (ledger.Sealed, error) {
		return r.opts.Sealer.Seal(ctx, first, prev, recs)
	}
	for {
		st := r.opts.Spool.Stats()
		if st.PendingRecords == 0 || st.UnackedBatches >= int64(r.opts.MaxInFlight) {
			return nil
		}
		if _, ok, err := r.opts.Spool.SealNext(ctx, seal, r.opts.MaxBatchRecords); err != nil || !ok {
			return err
		}
	}
}

// spoolMark is what an operator's requeue or re-anchor changes in the
// spool, and what a blocked reporter (which neither seals nor acknowledges)
// does not.
type spoolMark struct {
	acked, sealed uint64
	lastHash      string
	deadLetters   int64
	lowest        string // hash of the lowest unacknowledged batch, "" if none
}

func (r *Reporter) mark(ctx context.Context) (spoolMark, error) {
	var m spoolMark
	m.acked, m.sealed, m.lastHash = r.opts.Spool.Head()
	m.deadLetters = r.opts.Spool.Stats().DeadLetters
	bs, err := r.opts.Spool.Unacked(ctx, 1)
	if err != nil {
		return m, err
	}
	if len(bs) > 0 {
		m.lowest = bs[0].Hash
	}
	return m, nil
}

// localFailure handles a spool or sealer error: fatal when the spool is
// closed, else logged and retried after a backoff.
func (r *Reporter) localFailure(ctx context.Context, what string, err error) (result, error) {
	if ctx.Err() != nil {
		return result{kind: backoff}, nil
	}
	if errors.Is(err, spool.ErrClosed) {
		return result{}, fmt.Errorf("reporter: %s: %w", what, err)
	}
	r.log.Error("reporter cannot "+what+"; retrying", slog.Any("err", err))
	return r.failed(answer{err: fmt.Errorf("%s: %w", what, err)}, "local"), nil
}
