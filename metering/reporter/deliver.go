package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// send POSTs one stored batch, as stored, and acts on the answer.
func (r *Reporter) send(ctx context.Context, b spool.Batch) (result, error) {
	a := r.do(ctx, http.MethodPost, r.batchesURL, b.Envelope)
	if ctx.Err() != nil {
		return result{kind: backoff}, nil
	}
	switch {
	case a.transient():
		return r.failed(a, "", r.opts.RetryMax), nil
	case a.status == http.StatusOK:
		return r.accepted(ctx, b, a)
	case a.status == http.StatusConflict && a.problem.Cause() == protocol.Fork:
		return r.refused(ctx, b, a)
	case a.status == http.StatusConflict:
		// sequence-gap, chain-broken (or a 409 we do not know): the
		// authority's head decides what to resend. The short backoff keeps
		// an authority that answers 409 again and again from being hammered.
		r.needHead = true
		return r.failed(a, "", 0), nil
	case a.status >= 400 && a.status < 500:
		return r.refused(ctx, b, a)
	default:
		// 1xx, 3xx, other 2xx: not the protocol; try again later.
		return r.failed(a, "", r.opts.RetryMax), nil
	}
}

// accepted handles a 200: the authority holds everything up to head.
func (r *Reporter) accepted(ctx context.Context, b spool.Batch, a answer) (result, error) {
	if a.head < b.LastSeq {
		r.needHead = true
		return r.failed(answer{err: fmt.Errorf("200 for batch %d..%d with head %d", b.FirstSeq, b.LastSeq, a.head)}, "protocol", 0), nil
	}
	if err := r.opts.Spool.Ack(ctx, a.head); err != nil {
		if errors.Is(err, spool.ErrAckAhead) {
			r.needHead = true // reconcile sees the authority ahead and stops
		}
		return r.localFailure(ctx, "acknowledge", err)
	}
	now := r.clock.Now()
	r.mu.Lock()
	failures, wasBlocked := r.stats.ConsecutiveFailures, r.stats.Blocked
	r.stats.SentBatches++
	r.stats.SentRecords += int64(b.LastSeq - b.FirstSeq + 1)
	if a.duplicate {
		r.stats.Duplicates++
	}
	r.stats.AuthorityHead = a.head
	r.stats.LastSuccess = now
	r.stats.ConsecutiveFailures = 0
	r.stats.Blocked, r.stats.BlockedReason = false, ""
	r.mu.Unlock()
	r.needHead = false
	attrs := []any{slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq), slog.Uint64("head", a.head)}
	if a.duplicate {
		r.log.Info("authority already held the batch (an earlier answer was lost)", attrs...)
	}
	if wasBlocked {
		r.log.Info("delivery unblocked: the authority accepted the next batch", attrs...)
	} else if failures > 0 {
		r.log.Info("delivery recovered", append(attrs, slog.Int64("failures", failures))...)
	}
	return result{kind: progressed}, nil
}

// refused dead-letters a batch the authority refused for good, once per
// incident: after that the reporter is blocked and later refusals (which
// follow from the first) are logged, not dead-lettered.
func (r *Reporter) refused(ctx context.Context, b spool.Batch, a answer) (result, error) {
	attrs := []any{
		slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq),
		slog.Int("status", a.status), slog.String("cause", a.problem.Cause()), slog.String("detail", a.problem.Detail),
	}
	if r.Stats().Blocked {
		r.log.Debug("batch refused while blocked; kept in the spool", attrs...)
		return r.failed(a, "", 0), nil
	}
	reason := a.String()
	if err := r.opts.Spool.DeadLetter(ctx, b.FirstSeq, reason); err != nil {
		return r.localFailure(ctx, "dead-letter", err)
	}
	fork := a.problem.Cause() == protocol.Fork
	r.mu.Lock()
	r.stats.DeadLetters++
	if fork {
		r.stats.Forks++
	}
	r.mu.Unlock()
	if fork {
		r.log.Error("authority refused the batch as a FORK of the node's chain; dead-lettered, node flagged at the authority: an operator must resolve it", attrs...)
	} else {
		r.log.Error("authority refused the batch; dead-lettered", attrs...)
	}
	r.block(fmt.Sprintf("batch %d..%d dead-lettered (%s); later batches chain to it and wait in the spool", b.FirstSeq, b.LastSeq, reason))
	return r.failed(a, "", 0), nil
}

// reconcile asks the authority's head and settles the spool against it
// (package doc). ok is false when the pass must stop here.
func (r *Reporter) reconcile(ctx context.Context) (res result, ok bool, err error) {
	a := r.do(ctx, http.MethodGet, r.headURL, nil)
	if ctx.Err() != nil {
		return result{kind: backoff}, false, nil
	}
	if a.err != nil || a.status != http.StatusOK {
		return r.failed(a, "", r.opts.RetryMax), false, nil
	}
	r.mu.Lock()
	r.stats.AuthorityHead = a.head
	r.mu.Unlock()
	acked, sealed, _ := r.opts.Spool.Head()
	if a.head > sealed {
		if !r.ahead {
			r.log.Error("authority holds more records than this spool ever sealed; sending nothing, since every batch would fork the node",
				slog.Uint64("authority_head", a.head), slog.Uint64("sealed", sealed))
		}
		r.ahead = true
		r.block(fmt.Sprintf("authority head %d is beyond this spool's sealed head %d: the spool was replaced, or another agent reports as this node", a.head, sealed))
		return r.blockedWait(), false, nil
	}
	r.ahead, r.needHead = false, false
	if a.head < acked {
		r.log.Error("authority is behind the acknowledged mark: it lost batches it had acknowledged",
			slog.Uint64("authority_head", a.head), slog.Uint64("acked", acked))
	}
	if a.head > acked {
		if err := r.ackHead(ctx, a); err != nil {
			res, err := r.localFailure(ctx, "acknowledge the authority's head", err)
			return res, false, err
		}
	}
	bs, err := r.opts.Spool.Unacked(ctx, 1)
	if err != nil {
		res, err := r.localFailure(ctx, "list unacknowledged batches", err)
		return res, false, err
	}
	next := sealed + 1
	if len(bs) > 0 {
		next = bs[0].FirstSeq
	}
	if next > a.head+1 {
		r.block(fmt.Sprintf("authority expects seq %d, this spool holds from seq %d (dead-lettered, or lost at the authority after it acknowledged them)", a.head+1, next))
	}
	return result{kind: progressed}, true, nil
}

// ackHead acknowledges what the authority's head covers, unless the batch
// ending exactly at head is not the one the authority holds (then the POST
// is answered fork and the batch dead-lettered, rather than deleted here).
func (r *Reporter) ackHead(ctx context.Context, a answer) error {
	bs, err := r.opts.Spool.Unacked(ctx, 0)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.LastSeq == a.head && a.headHash != "" && b.Hash != a.headHash {
			r.log.Error("authority holds a different batch ending at its head; not acknowledging ours",
				slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq))
			return nil
		}
	}
	if err := r.opts.Spool.Ack(ctx, a.head); err != nil {
		return err
	}
	r.log.Info("authority already held records up to its head; acknowledged", slog.Uint64("head", a.head))
	return nil
}

// block enters the blocked state (see the package doc), logging on entry.
func (r *Reporter) block(reason string) {
	r.mu.Lock()
	was := r.stats.Blocked
	r.stats.Blocked, r.stats.BlockedReason = true, reason
	r.mu.Unlock()
	if !was {
		r.log.Error("delivery blocked until an operator acts", slog.String("reason", reason))
	}
}

// failed records a failure and returns the wait before the next pass:
// Retry-After when given; about RetryWaitMax while blocked; else the
// jittered exponential backoff from attempt base + failures.
func (r *Reporter) failed(a answer, cause string, base int) result {
	if cause == "" {
		switch {
		case a.err != nil:
			cause = "network"
		case a.problem.Cause() != "":
			cause = a.problem.Cause()
		default:
			cause = fmt.Sprintf("status %d", a.status)
		}
	}
	r.mu.Lock()
	r.stats.ConsecutiveFailures++
	r.stats.LastError, r.stats.LastErrorCause = a.String(), cause
	n, blocked := r.stats.ConsecutiveFailures, r.stats.Blocked
	r.mu.Unlock()
	if n == 1 && !blocked {
		r.log.Warn("delivery failed; retrying with backoff", slog.String("cause", cause), slog.String("error", a.String()))
	} else {
		r.log.Debug("delivery failed again", slog.String("cause", cause), slog.Int64("failures", n))
	}
	switch {
	case a.retryAfter > 0:
		return result{kind: backoff, wait: a.retryAfter}
	case blocked:
		return r.blockedWait()
	default:
		return result{kind: backoff, wait: jittered(r.opts.RetryWaitMin, r.opts.RetryWaitMax, base+int(n)-1)}
	}
}

// blockedWait probes about every RetryWaitMax (jittered over its upper half).
func (r *Reporter) blockedWait() result {
	return result{kind: backoff, wait: jittered(r.opts.RetryWaitMin, r.opts.RetryWaitMax, 62)}
}
