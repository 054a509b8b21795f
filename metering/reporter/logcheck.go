package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// Reasons a log check fails (Stats.LogVerifyFailures, the metric's label).
const (
	LogSignature    = "signature"    // checkpoint not signed by the log's key
	LogInclusion    = "inclusion"    // the batch sent is not in the checkpoint's tree
	LogInconsistent = "inconsistent" // the tree does not extend the one kept (rewritten, forked, split view)
	LogHeadHash     = "head-hash"    // a restored authority's head is not the batch this spool holds there
	LogUnverified   = "unverified"   // the key or a proof could not be fetched: retried, not held
)

// logFailure is a failed log check; conflict: the log contradicts what
// this spool kept, and delivery is held until an operator accepts it.
type logFailure struct {
	reason   string
	err      error
	conflict bool
}

// logVerifier is the verifier of the configured key, else of the key
// pinned in the spool, else of the key the authority serves, pinned now
// (trust on first use).
func (r *Reporter) logVerifier(ctx context.Context) (*tlog.Verifier, error) {
	key := r.opts.LogKey
	if key == "" {
		key = r.opts.Spool.LogKey()
	}
	if key != "" && r.logV != nil && r.logVKey == key {
		return r.logV, nil
	}
	pin := key == ""
	if pin {
		body, err := r.getLog(ctx, protocol.PathLogKey)
		if err != nil {
			return nil, fmt.Errorf("fetch the log key: %w", err)
		}
		key = string(body)
	}
	v, err := tlog.NewVerifier(key)
	if err != nil {
		return nil, err
	}
	if pin {
		if err := r.opts.Spool.PinLogKey(ctx, key); err != nil {
			return nil, err
		}
		r.log.Warn("no authority.log_key configured: trusting the log key the authority serves on first use, pinned in the spool (set authority.log_key to the key the authority prints to check it from the start)",
			slog.String("log_key", key))
	}
	r.logV, r.logVKey = v, key
	return v, nil
}

// checkLog verifies a receipt: the checkpoint's signature, the inclusion
// of leaf (nil for a head read), and consistency with the newest kept
// checkpoint of a size at most the new one's; then keeps the checkpoint.
func (r *Reporter) checkLog(ctx context.Context, rec *protocol.LogReceipt, leaf []byte) *logFailure {
	v, err := r.logVerifier(ctx)
	if err != nil {
		return &logFailure{LogUnverified, err, false}
	}
	cp, err := v.Open([]byte(rec.Checkpoint))
	if err != nil {
		return &logFailure{LogSignature, err, true}
	}
	if leaf != nil {
		if rec.LeafIndex == nil {
			return &logFailure{LogInclusion, fmt.Errorf("%w: receipt without a leaf index (size %d, root %x)", tlog.ErrInclusion, cp.Size, cp.Root), true}
		}
		if err := tlog.VerifyInclusion(cp, *rec.LeafIndex, leaf, rec.Inclusion); err != nil {
			return &logFailure{LogInclusion, fmt.Errorf("%w (root %x)", err, cp.Root), true}
		}
	}
	kept, err := r.opts.Spool.Checkpoints(ctx)
	if err != nil {
		return &logFailure{LogUnverified, err, false}
	}
	for i := len(kept) - 1; i >= 0; i-- {
		if kept[i].Size > cp.Size {
			continue
		}
		base, err := v.Open(kept[i].Note)
		if err != nil {
			return &logFailure{LogSignature, fmt.Errorf("kept checkpoint of size %d: %w", kept[i].Size, err), true}
		}
		proof := rec.Consistency
		if base.Size > 0 && base.Size < cp.Size && (rec.ConsistencyFrom != base.Size || len(proof) == 0) {
			if proof, err = r.fetchConsistency(ctx, base.Size, cp.Size); err != nil {
				return &logFailure{LogUnverified, err, false}
			}
		}
		if err := tlog.VerifyConsistency(base, cp, proof); err != nil {
			return &logFailure{LogInconsistent, fmt.Errorf("kept size %d root %x, authority's size %d root %x: %w", base.Size, base.Root, cp.Size, cp.Root, err), true}
		}
		break
	}
	larger, err := r.opts.Spool.KeepCheckpoint(ctx, cp.Size, cp.Note, r.opts.LogHistory)
	if err != nil {
		return &logFailure{LogUnverified, err, false}
	}
	if len(larger) > 0 {
		r.log.Warn("the authority's log is smaller than checkpoints kept here (restored from a backup?); its tree extends the newest kept checkpoint it can, and the larger ones are dropped",
			slog.Uint64("log_size", cp.Size), slog.Any("dropped_sizes", larger))
	}
	r.mu.Lock()
	r.stats.LogCheckpointSize = cp.Size
	r.mu.Unlock()
	return nil
}

// onLogFailure counts and logs a failed check; a conflict holds delivery
// in the spool (it survives restarts) and blocks. It reports whether the
// pass must stop.
func (r *Reporter) onLogFailure(ctx context.Context, f *logFailure, attrs ...any) bool {
	r.mu.Lock()
	if r.stats.LogVerifyFailures == nil {
		r.stats.LogVerifyFailures = map[string]int64{}
	}
	r.stats.LogVerifyFailures[f.reason]++
	r.mu.Unlock()
	attrs = append(attrs, slog.String("reason", f.reason), slog.Any("err", f.err))
	if !f.conflict {
		r.log.Warn("could not check the authority's log; the checkpoint is not kept, and the next answer is checked again", attrs...)
		return false
	}
	r.log.Error("the AUTHORITY'S LOG CONTRADICTS what this agent kept: sending nothing more to it; every batch stays in the spool. Investigate, then gpumeter spool accept-log", attrs...)
	if err := r.opts.Spool.SetLogConflict(ctx, f.reason+": "+f.err.Error()); err != nil {
		r.log.Error("cannot record the log conflict in the spool", slog.Any("err", err))
	}
	r.logHeld()
	return true
}

// logHeld enters (or stays in) the blocked state of a log conflict.
func (r *Reporter) logHeld() {
	c := r.opts.Spool.LogConflict()
	r.mu.Lock()
	r.stats.LogInconsistent, r.stats.LogConflict = true, c
	r.mu.Unlock()
	r.block("the authority's log contradicts this spool (" + c + "): nothing is sent and every batch is kept; investigate, then gpumeter spool accept-log")
}

// restored handles an authority whose head for this node is behind the
// spool's acknowledged mark: restored from a backup. If the authority's
// head is where this spool's chain was (the retained batch after it chains
// to its hash) the mark moves back and the lost batches are sent again,
// unchanged. Its log (when it has one) was checked by reconcile already.
// ok is false when the pass must stop (blocked).
func (r *Reporter) restored(ctx context.Context, a answer, acked uint64) (res result, ok bool, err error) {
	kept, err := r.opts.Spool.Retained(ctx)
	if err != nil {
		res, err := r.localFailure(ctx, "list retained batches", err)
		return res, false, err
	}
	var next *spool.Batch
	for i := range kept {
		if kept[i].FirstSeq == a.head+1 {
			next = &kept[i].Batch
		}
	}
	if next != nil {
		prev, err := next.PrevHash()
		if err != nil {
			res, err := r.localFailure(ctx, "read a retained batch", err)
			return res, false, err
		}
		if prev != a.headHash {
			f := &logFailure{LogHeadHash, fmt.Errorf("the authority's head %d has hash %q, this spool's batch %d..%d chains to %q", a.head, a.headHash, next.FirstSeq, next.LastSeq, prev), true}
			r.onLogFailure(ctx, f, slog.Uint64("authority_head", a.head), slog.Uint64("acked", acked))
			return r.blockedWait(), false, nil
		}
	}
	moved, err := r.opts.Spool.Unack(ctx, a.head)
	if errors.Is(err, spool.ErrNotRetained) || next == nil {
		if err == nil {
			err = fmt.Errorf("%w: no retained batch starts at seq %d", spool.ErrNotRetained, a.head+1)
		}
		r.log.Error("the authority lost acknowledged batches that this spool no longer retains: that usage is lost unless found elsewhere (gpumeter spool re-anchor continues the chain from the authority's head)",
			slog.Uint64("authority_head", a.head), slog.Uint64("acked", acked), slog.Any("err", err))
		r.mu.Lock()
		r.stats.LostRange = fmt.Sprintf("%d..%d", a.head+1, acked)
		r.mu.Unlock()
		r.block(fmt.Sprintf("the authority lost seqs %d..%d, which this spool no longer retains: that usage is lost (gpumeter spool re-anchor)", a.head+1, acked))
		return r.blockedWait(), false, nil
	}
	if err != nil {
		res, err := r.localFailure(ctx, "move the acknowledged mark back", err)
		return res, false, err
	}
	r.log.Warn("the authority was restored from a backup and lost acknowledged batches; its head and log agree with this spool: sending them again, unchanged",
		slog.Uint64("from_seq", a.head+1), slog.Uint64("to_seq", acked), slog.Int("batches", len(moved)), slog.Bool("log_checked", a.log != nil))
	r.mu.Lock()
	r.stats.Recoveries++
	r.stats.RecoveredBatches += int64(len(moved))
	r.stats.LostRange = ""
	r.mu.Unlock()
	return result{kind: progressed}, true, nil
}

// getLog GETs one of the log's endpoints (no credential needed).
func (r *Reporter) getLog(ctx context.Context, pathAndQuery string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.baseURL+pathAndQuery, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", pathAndQuery, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %s", pathAndQuery, resp.StatusCode, truncate(body, 200))
	}
	return body, nil
}

// fetchConsistency asks the proof that the tree of size to extends the
// tree of size from.
func (r *Reporter) fetchConsistency(ctx context.Context, from, to uint64) ([][]byte, error) {
	q := url.Values{"from": {strconv.FormatUint(from, 10)}, "to": {strconv.FormatUint(to, 10)}}
	body, err := r.getLog(ctx, protocol.PathLogConsistency+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("fetch the consistency proof from size %d to %d: %w", from, to, err)
	}
	var p protocol.LogProof
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("consistency proof from size %d to %d: %w", from, to, err)
	}
	if p.Size != to {
		return nil, fmt.Errorf("consistency proof from size %d: for size %d, asked %d", from, p.Size, to)
	}
	return p.Hashes, nil
}

// logStats copies the map so that a snapshot does not share it.
func logStats(st *Stats) { st.LogVerifyFailures = maps.Clone(st.LogVerifyFailures) }
