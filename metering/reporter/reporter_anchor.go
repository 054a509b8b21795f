package reporter

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// anchorIfNeeded anchors a spool in the needs-anchor state (it replaced a
// damaged file, or quarantined a damaged batch) on the authority's head:
// the chain continues from head+1 and the time from the authority's last
// window end to the first window pending is recorded as spool_lost gaps
// (spool.Anchor). ok is false when the pass must stop here (the head could
// not be read: backoff).
func (r *Reporter) anchorIfNeeded(ctx context.Context) (res result, ok bool) {
	if !r.opts.Spool.NeedsAnchor() {
		return result{}, true
	}
	h, a := r.getHead(ctx)
	if ctx.Err() != nil {
		return result{kind: backoff}, false
	}
	if a.err != nil || a.status != http.StatusOK {
		return r.failed(a, ""), false
	}
	got, err := r.opts.Spool.Anchor(ctx, h.Head, h.HeadHash, h.LastWindowEnd, spool.AnchorOptions{})
	if err != nil {
		r.log.Error("cannot anchor the spool on the authority's head; retrying", slog.Any("err", err))
		return r.failed(answer{err: err}, "local"), false
	}
	r.log.Warn("spool anchored on the authority's head: the chain continues there, the time the spool lost is recorded as spool_lost gaps",
		slog.Uint64("head", got.Head), slog.Int("acknowledged_batches", got.AckedBatches),
		slog.Int("resealed_batches", got.UnsealedBatches), slog.Int("lost_batches", got.LostBatches),
		slog.Time("gap_from", got.GapFrom), slog.Int("gap_records", got.GapRecords), slog.Bool("gap_waits_for_first_window", got.GapPending))
	r.needHead = true
	return result{kind: progressed}, true
}

// getHead is GET head decoded in full (last_window_end included).
func (r *Reporter) getHead(ctx context.Context) (protocol.HeadAnswer, answer) {
	a := r.do(ctx, http.MethodGet, r.headURL, nil)
	r.observeClock(a)
	return protocol.HeadAnswer{Node: r.opts.Node, Head: a.head, HeadHash: a.headHash, LastWindowEnd: a.lastWindowEnd}, a
}

// Head asks the authority for the node's head with a signed GET, as the
// reporter does (gpumeter spool re-anchor).
func (r *Reporter) Head(ctx context.Context) (protocol.HeadAnswer, error) {
	h, a := r.getHead(ctx)
	if a.err != nil || a.status != http.StatusOK {
		return h, fmt.Errorf("GET %s: %s", r.headURL, a.String())
	}
	return h, nil
}
