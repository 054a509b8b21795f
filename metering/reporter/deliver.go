package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// send POSTs one stored batch, as stored, and acts on the answer.
func (r *Reporter) send(ctx context.Context, b spool.Batch) (result, error) {
	a := r.do(ctx, http.MethodPost, r.batchesURL, b.Envelope)
	if cancelled(ctx, a) {
		return result{kind: backoff}, nil
	}
	r.observeClock(a)
	switch {
	case a.status == http.StatusOK:
		return r.accepted(ctx, b, a)
	case a.held():
		return r.held(a, "authority holds the batch back; it stays in the spool and is sent again until accepted",
			slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq)), nil
	case a.transient():
		return r.failed(a, ""), nil
	case a.status == http.StatusConflict && a.problem.Cause() == protocol.SecondSigner:
		return r.secondSigner(ctx, b, a)
	case a.status == http.StatusConflict && a.problem.Cause() == protocol.Fork:
		// An authority older than second-signer says fork: dead-letter
		// the batch as evidence and block until the spool changes.
		return r.refused(ctx, b, a)
	case a.status == http.StatusConflict:
		// sequence-gap, chain-broken (or a 409 we do not know): the
		// authority's head decides what to resend. The short backoff keeps
		// an authority that answers 409 again and again from being hammered.
		r.needHead = true
		return r.failed(a, ""), nil
	case a.status >= 400 && a.status < 500:
		return r.refused(ctx, b, a)
	default:
		// 1xx, 3xx, other 2xx: not the protocol; try again later.
		return r.failed(a, ""), nil
	}
}

// cancelled: ctx ended and the request with it. An answer (or a transport
// error of its own) that came before is still acted on, so that Stats say
// what the last attempt met.
func cancelled(ctx context.Context, a answer) bool {
	return ctx.Err() != nil && (a.err == nil && a.status == 0 || a.err != nil && (errors.Is(a.err, context.Canceled) || errors.Is(a.err, context.DeadlineExceeded)))
}

// accepted handles a 200: the authority holds everything up to head.
func (r *Reporter) accepted(ctx context.Context, b spool.Batch, a answer) (result, error) {
	if a.head < b.LastSeq {
		r.needHead = true
		return r.failed(answer{err: fmt.Errorf("200 for batch %d..%d with head %d", b.FirstSeq, b.LastSeq, a.head)}, "protocol"), nil
	}
	if err := r.opts.Spool.Ack(ctx, a.head); err != nil {
		if errors.Is(err, spool.ErrAckAhead) {
			r.needHead = true // reconcile sees the authority ahead and stops
		}
		return r.localFailure(ctx, "acknowledge", err)
	}
	if a.log != nil {
		leaf := tlog.BatchLeaf(r.opts.Node, b.FirstSeq, b.LastSeq, b.Envelope)
		if f := r.checkLog(ctx, a.log, leaf, false); f != nil &&
			r.onLogFailure(ctx, f, slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq)) {
			return r.blockedWait(), nil
		}
	}
	now := r.clock.Now()
	r.mu.Lock()
	failures, wasBlocked, wasHeld, heldCause := r.stats.ConsecutiveFailures, r.stats.Blocked, r.stats.Held, r.stats.HeldCause
	heldSince := r.stats.HeldSince
	r.stats.SentBatches++
	r.stats.SentRecords += int64(b.LastSeq - b.FirstSeq + 1)
	if a.duplicate {
		r.stats.Duplicates++
	}
	r.stats.AuthorityHead = a.head
	r.stats.LastSuccess = now
	r.stats.ConsecutiveFailures = 0
	r.stats.Blocked, r.stats.BlockedReason, r.stats.SecondSigner = false, "", false
	r.stats.Held, r.stats.HeldCause, r.stats.HeldSince = false, "", time.Time{}
	r.mu.Unlock()
	r.needHead = false
	attrs := []any{slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq), slog.Uint64("head", a.head)}
	if a.duplicate {
		r.log.Info("authority already held the batch (an earlier answer was lost)", attrs...)
	}
	switch {
	case wasBlocked:
		r.log.Info("delivery unblocked: the authority accepted the next batch", attrs...)
	case wasHeld:
		r.log.Info("the authority accepted the held batch; delivery goes on",
			append(attrs, slog.String("cause", heldCause), slog.Duration("held_for", now.Sub(heldSince)))...)
	case failures > 0:
		r.log.Info("delivery recovered", append(attrs, slog.Int64("failures", failures))...)
	}
	return result{kind: progressed}, nil
}

// held handles a held refusal: the batch stays unacknowledged and is sent
// again, as stored, after Retry-After or about RetryWaitMax. The log says,
// on entry and whenever the cause changes, what fixes it.
func (r *Reporter) held(a answer, msg string, where ...any) result {
	cause := a.problem.Cause()
	now := r.clock.Now()
	r.mu.Lock()
	was, wasCause := r.stats.Held, r.stats.HeldCause
	if !was {
		r.stats.HeldSince = now
	}
	r.stats.Held, r.stats.HeldCause = true, cause
	r.stats.ConsecutiveFailures++
	r.stats.LastError, r.stats.LastErrorCause = a.String(), cause
	instance := r.stats.Instance
	r.mu.Unlock()
	attrs := append(where,
		slog.Int("status", a.status), slog.String("cause", cause), slog.String("detail", a.problem.Detail),
		slog.String("action", heldAction(cause, r.opts.Node, instance)),
	)
	if !was || wasCause != cause {
		r.log.Warn(msg, attrs...)
	} else {
		r.log.Debug("batch still held", attrs...)
	}
	if a.retryAfter > 0 {
		return result{kind: backoff, wait: a.retryAfter}
	}
	return r.blockedWait()
}

// heldByTime: held causes that the clocks fix without an operator.
func heldByTime(cause string) bool {
	return cause == protocol.WindowNotEnded || cause == protocol.FutureWindow
}

// heldAction is what the operator does about a held refusal.
func heldAction(cause, node, instance string) string {
	switch cause {
	case protocol.GPUNotRegistered:
		return "register the GPU named in the detail at the authority: voucher-authority node add-gpu --id " + node + " --gpu UUID --model MODEL"
	case protocol.GPUClaimed:
		return "the GPU is registered to another node at the authority: correct the registration there (the GPU belongs to " + node + ")"
	case protocol.Unauthorized:
		return "the authority refuses this node's signed reads: its key is not registered or was revoked; register it (voucher-authority key rotate --node " + node + " --public-key ...) or point signing.key_file at the registered key"
	case protocol.UnknownKey:
		return "register this node's public key at the authority (voucher-authority key rotate --node " + node + " --public-key ...), or point signing.key_file at the registered key"
	case protocol.RevokedKey:
		return "the key was revoked at the authority: make a new key (gpumeter keygen), register it (voucher-authority key rotate) and point signing.key_file at it"
	case protocol.NoInventory:
		return "the authority has no inventory of this node yet: it is sent at start; check that the inventory record was not refused (the agent log)"
	case protocol.BeforeActive:
		return "the window is before the GPU's registration or the key's activation at the authority: move --since or key rotate --active-from back if the usage is real"
	case protocol.FutureWindow, protocol.WindowNotEnded:
		return "the window ends after the authority's clock: check both hosts' time synchronisation (gpumeter_authority_clock_offset_seconds)"
	default:
		a := "a held refusal this version does not know (" + cause + "): fix the cause at the authority"
		if instance != "" {
			a += " (this is instance " + instance + ")"
		}
		return a
	}
}

// refused dead-letters a batch the authority refused for good and blocks:
// the batches after it chain to it. While blocked nothing is sent, so only
// one batch is dead-lettered per incident.
func (r *Reporter) refused(ctx context.Context, b spool.Batch, a answer) (result, error) {
	attrs := []any{
		slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq),
		slog.Int("status", a.status), slog.String("cause", a.problem.Cause()), slog.String("detail", a.problem.Detail),
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
	r.stats.ConsecutiveFailures++
	r.stats.LastError, r.stats.LastErrorCause = reason, a.problem.Cause()
	r.mu.Unlock()
	if fork {
		r.log.Error("authority refused the batch as a FORK of the node's chain; dead-lettered, node flagged at the authority: an operator must resolve it (gpumeter spool re-anchor after retiring the other copy)", attrs...)
		m, err := r.mark(ctx)
		if err != nil {
			return r.localFailure(ctx, "read the spool's state", err)
		}
		r.sticky = &m
	} else {
		r.log.Error("authority refused the batch; dead-lettered", attrs...)
	}
	r.block(fmt.Sprintf("batch %d..%d dead-lettered (%s); later batches chain to it and wait in the spool (gpumeter spool requeue once the authority accepts it, or gpumeter spool re-anchor)", b.FirstSeq, b.LastSeq, reason))
	return r.blockedWait(), nil
}

// secondSigner blocks on a second-signer refusal: the authority keeps the
// chain it stored first, and this copy must stop signing into it. Nothing
// is dead-lettered (the batch is this copy's evidence, kept unacknowledged)
// and nothing is sent until the spool changes or the agent restarts.
func (r *Reporter) secondSigner(ctx context.Context, b spool.Batch, a answer) (result, error) {
	m, err := r.mark(ctx)
	if err != nil {
		return r.localFailure(ctx, "read the spool's state", err)
	}
	r.sticky = &m
	r.mu.Lock()
	r.stats.SecondSigner = true
	r.stats.ConsecutiveFailures++
	r.stats.LastError, r.stats.LastErrorCause = a.String(), protocol.SecondSigner
	instance := r.stats.Instance
	r.mu.Unlock()
	r.log.Error("ANOTHER COPY of this node signs with its key: the authority kept the other copy's chain and refused this instance's batch; retire one copy (a cloned image or restored disk), then re-anchor the one kept (gpumeter spool re-anchor)",
		slog.String("instance", instance), slog.Uint64("first_seq", b.FirstSeq), slog.Uint64("last_seq", b.LastSeq),
		slog.String("detail", a.problem.Detail))
	r.block(fmt.Sprintf("second signer: another copy of node %s signs with its key; the authority kept the other copy's chain and refused batch %d..%d from instance %s: retire one copy", r.opts.Node, b.FirstSeq, b.LastSeq, instance))
	return r.blockedWait(), nil
}

// reconcile asks the authority's head and settles the spool against it
// (package doc). ok is false when the pass must stop here: on a failure,
// or while the spool cannot continue the authority's chain (blocked).
func (r *Reporter) reconcile(ctx context.Context) (res result, ok bool, err error) {
	a := r.do(ctx, http.MethodGet, r.headURL, nil)
	if cancelled(ctx, a) {
		return result{kind: backoff}, false, nil
	}
	r.observeClock(a)
	if a.err == nil && (a.status == http.StatusUnauthorized || a.status == http.StatusForbidden) {
		// The authority answers a node's reads only to a registered,
		// unrevoked key of the node: an operator fixes this at the
		// authority, like a held batch.
		if a.problem.Type == "" {
			a.problem.Type = protocol.TypeBase + protocol.Unauthorized
		}
		r.heldRead = true
		return r.held(a, "authority refuses this node's signed reads; delivery waits, keeping every batch, until it answers them", slog.String("request", "GET head")), false, nil
	}
	if a.err != nil || a.status != http.StatusOK {
		return r.failed(a, ""), false, nil
	}
	if r.heldRead {
		r.heldRead = false
		r.mu.Lock()
		r.stats.Held, r.stats.HeldCause, r.stats.HeldSince = false, "", time.Time{}
		r.mu.Unlock()
		r.log.Info("the authority answers this node's signed reads again")
	}
	r.mu.Lock()
	r.stats.AuthorityHead = a.head
	r.mu.Unlock()
	acked, sealed, _ := r.opts.Spool.Head()
	if a.log != nil {
		if f := r.checkLog(ctx, a.log, nil, a.head < acked); f != nil && r.onLogFailure(ctx, f, slog.String("request", "GET head")) {
			return r.blockedWait(), false, nil
		}
	}
	if a.head > sealed {
		if !r.ahead {
			r.log.Error("authority holds more records than this spool ever sealed; sending nothing, since every batch would fork the node",
				slog.Uint64("authority_head", a.head), slog.Uint64("sealed", sealed))
		}
		r.ahead = true
		r.block(fmt.Sprintf("authority head %d is beyond this spool's sealed head %d: the spool was replaced, or another agent reports as this node (gpumeter spool re-anchor)", a.head, sealed))
		return r.blockedWait(), false, nil
	}
	r.ahead, r.needHead = false, false
	if a.head < acked {
		if res, ok, err := r.restored(ctx, a, acked); !ok || err != nil {
			return res, ok, err
		}
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
		return r.blockedWait(), false, nil
	}
	if r.unblock() {
		r.log.Info("delivery unblocked: the spool continues the authority's chain again (a dead letter requeued or accepted, or the spool re-anchored)",
			slog.Uint64("head", a.head), slog.Uint64("next_seq", next))
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

// block enters the blocked state (see the package doc), logging on entry;
// the first reason stays until the state ends.
func (r *Reporter) block(reason string) {
	r.mu.Lock()
	was := r.stats.Blocked
	if !was {
		r.stats.Blocked, r.stats.BlockedReason = true, reason
	}
	r.mu.Unlock()
	if !was {
		r.log.Error("delivery blocked until an operator acts", slog.String("reason", reason))
	}
}

// unblock leaves the blocked state; it reports whether it was blocked.
func (r *Reporter) unblock() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := r.stats.Blocked
	r.stats.Blocked, r.stats.BlockedReason, r.stats.SecondSigner = false, "", false
	return was
}

// failed records a transient failure and returns the wait before the next
// pass: Retry-After when given, spread (spreadRetryAfter); about RetryWaitMax while blocked or after
// a permanent transport error; else the jittered exponential backoff.
func (r *Reporter) failed(a answer, cause string) result {
	if cause == "" {
		switch {
		case a.err != nil && a.permanent:
			cause = "permanent"
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
	switch {
	case a.permanent && n == 1:
		r.log.Error("delivery failed in a way retrying soon cannot fix (check authority.url, authority.ca_file and the authority's certificate); trying again about every retry_wait_max",
			slog.String("error", a.String()))
	case n == 1 && !blocked:
		r.log.Warn("delivery failed; retrying with backoff", slog.String("cause", cause), slog.String("error", a.String()))
	default:
		r.log.Debug("delivery failed again", slog.String("cause", cause), slog.Int64("failures", n))
	}
	switch {
	case a.retryAfter > 0:
		return result{kind: backoff, wait: spreadRetryAfter(a.retryAfter)}
	case blocked, a.permanent:
		return r.blockedWait()
	default:
		return result{kind: backoff, wait: jittered(r.opts.RetryWaitMin, r.opts.RetryWaitMax, int(n)-1)}
	}
}

// blockedWait probes about every RetryWaitMax (jittered over its upper half).
func (r *Reporter) blockedWait() result {
	return result{kind: backoff, wait: jittered(r.opts.RetryWaitMin, r.opts.RetryWaitMax, 62)}
}
