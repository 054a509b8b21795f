package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// Submission is a verified batch ready to be stored.
type Submission struct {
	Batch    protocol.Batch
	Hash     string // protocol.Hash of the payload
	Envelope []byte // the envelope exactly as received
	Received time.Time
	// Now is the ingester's clock, read once the transaction holds the
	// node's key row: a revocation that committed before that moment
	// refuses the batch even if the batch was received before it, so that
	// what was stored when a revocation commits is all that is ever
	// stored. Nil: Received.
	Now func() time.Time
	// Verify judges the batch by what the authority holds of its node (read
	// inside the transaction, after the sequence and chain checks): it
	// returns one verdict per record, or an error that refuses the batch
	// and is returned as is. It applies the batch's inventory records to
	// the facts. Nil: every record counts by its own model and slice
	// (defaultVerdicts), which only the store's own tests rely on.
	Verify func(f *Facts, b *protocol.Batch) ([]RecordVerdict, error)
}

// Result is the outcome of an accepted (or duplicate) submission.
type Result struct {
	Node      string
	Head      uint64 // highest seq durably stored for the node
	Duplicate bool   // identical to the stored batch: nothing was written
	Records   int    // records written (0 for a duplicate)
	// LogIndex is the batch's leaf in the verifiable log (a duplicate's:
	// the stored batch's); nil when the log keeps none for it.
	LogIndex *uint64
}

// Ingest stores a batch if it continues the node's chain and keeps every
// unit within wall time, all in one transaction. An exact resend answers
// Duplicate. A batch that does not link into the stored chain, though its
// signature verified (one at a stored sequence with different content, or
// one at head+1 whose prev_hash is not the head's hash), comes from a
// second copy of the node: the chain stored first is kept, the node is
// flagged for review and the copy's instance counted (that is committed),
// and ErrSecondSigner returned. The flag refuses nothing: batches that
// extend the head are accepted as ever. Every other rejection writes
// nothing.
func (s *Store) Ingest(ctx context.Context, sub Submission) (Result, error) {
	b := &sub.Batch
	var (
		res  Result
		leaf *pendingLeaf
	)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var (
			provider, headHash string
			head               uint64
			lastEnd            int64
		)
		// The head is re-read under the node's lock (SQLite's write lock;
		// the row lock FOR UPDATE takes on PostgreSQL, where a second
		// ingest of the node, in this process or another, waits here and
		// then reads the head the first committed): whatever raced us has
		// committed or not, and this is the truth we extend. This is the
		// first lock an ingest takes; unit locks come after (checkRecords).
		err := s.queryRowTx(ctx, tx, `SELECT provider, head_seq, head_hash, last_window_end_ms FROM nodes WHERE id = ?`+s.d.forUpdate, b.Node).
			Scan(&provider, &head, &headHash, &lastEnd)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("ingest batch of node %q: %w", b.Node, ErrNodeNotFound)
		}
		if err != nil {
			return fmt.Errorf("ingest batch of node %q: read head: %w", b.Node, err)
		}
		res = Result{Node: b.Node, Head: head}
		if b.FirstSeq <= head {
			return s.checkResend(ctx, tx, sub, head, &res)
		}
		if b.FirstSeq > head+1 {
			return &SeqError{Err: ErrSequenceGap, Expected: head + 1,
				Detail: fmt.Sprintf("first_seq %d, but the head is %d", b.FirstSeq, head)}
		}
		if b.PrevHash != headHash {
			// One signer never does this: its next batch chains to the
			// batch it stored at head. A copy that fell behind does, once
			// its sequence numbers catch up with the original's.
			return s.secondSigner(ctx, tx, sub, head, head,
				fmt.Sprintf("prev_hash %q is not the hash %q of the head batch", b.PrevHash, headHash))
		}
		facts, err := s.loadFacts(ctx, tx, b, provider, sub.Received, sub.Now)
		if err != nil {
			return err
		}
		verdicts := defaultVerdicts(b)
		if sub.Verify != nil {
			if verdicts, err = sub.Verify(facts, b); err != nil {
				return err
			}
			if len(verdicts) != len(b.Records) {
				return fmt.Errorf("ingest batch %d of node %q: %d verdicts for %d records", b.FirstSeq, b.Node, len(verdicts), len(b.Records))
			}
		}
		if err := s.checkRecords(ctx, tx, b, provider, facts); err != nil {
			return err
		}
		if err := s.addGPUWindows(ctx, tx, facts, b, verdicts); err != nil {
			return err
		}
		if err := s.insert(tx, sub); err != nil {
			return err
		}
		leaf = s.logBatch(tx, &sub)
		if err := s.saveInventories(ctx, tx, facts); err != nil {
			return err
		}
		// Billing is final at ingest, in the same transaction: a batch
		// stored once is priced and subsidized once (billing.go).
		if err := s.bill(ctx, tx, b, verdicts, sub.Received); err != nil {
			return err
		}
		for i := range b.Records {
			if r := &b.Records[i]; r.Kind != protocol.KindInventory {
				lastEnd = max(lastEnd, r.WindowEnd.UnixMilli())
			}
		}
		s.queue(tx, fmt.Sprintf("ingest batch %d of node %q: advance head", b.FirstSeq, b.Node),
			`UPDATE nodes SET head_seq = ?, head_hash = ?, last_window_end_ms = ? WHERE id = ?`,
			b.LastSeq, sub.Hash, lastEnd, b.Node)
		s.noteInstance(tx, b.Node, b.Instance, sub.Received, true)
		res.Head, res.Records = b.LastSeq, len(b.Records)
		return nil
	})
	if sr := (*storedRecordsError)(nil); errors.As(err, &sr) {
		return Result{}, s.storedRecords(ctx, sr)
	}
	if err != nil {
		return Result{}, err
	}
	if res.LogIndex, err = s.batchLeafIndex(ctx, leaf, b, res.Duplicate); err != nil {
		return Result{}, err
	}
	return res, nil
}

// checkResend handles first_seq <= head: an identical batch is a
// duplicate, anything else a second signer.
func (s *Store) checkResend(ctx context.Context, tx *sql.Tx, sub Submission, head uint64, res *Result) error {
	b := &sub.Batch
	var storedHash string
	err := s.queryRowTx(ctx, tx, `SELECT hash FROM batches WHERE node_id = ? AND first_seq = ?`, b.Node, b.FirstSeq).Scan(&storedHash)
	switch {
	case err == nil && storedHash == sub.Hash:
		res.Duplicate = true
		return nil
	case err == nil:
		return s.secondSigner(ctx, tx, sub, head, b.FirstSeq,
			fmt.Sprintf("batch at first_seq %d has hash %s, the stored one %s", b.FirstSeq, sub.Hash, storedHash))
	case errors.Is(err, sql.ErrNoRows):
		// Stored seqs are split differently: cut by another copy (one
		// signer never re-cuts a committed batch).
		return s.secondSigner(ctx, tx, sub, head, b.FirstSeq,
			fmt.Sprintf("first_seq %d is stored inside another batch", b.FirstSeq))
	default:
		return fmt.Errorf("ingest batch %d of node %q: read stored batch: %w", b.FirstSeq, b.Node, err)
	}
}

// secondSigner refuses sub, which conflicts with the stored batch that
// holds seq: it flags the node, counts the refusal against the batch's
// instance and names both instances; that is committed (keepError), the
// batch is not.
func (s *Store) secondSigner(ctx context.Context, tx *sql.Tx, sub Submission, head, seq uint64, detail string) error {
	b := &sub.Batch
	var (
		storedFirst uint64
		storedInst  string
	)
	err := s.queryRowTx(ctx, tx, `SELECT first_seq, instance FROM batches WHERE node_id = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1`,
		b.Node, seq).Scan(&storedFirst, &storedInst)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("ingest batch %d of node %q: read stored batch: %w", b.FirstSeq, b.Node, err)
	}
	if _, err := s.exec(ctx, tx, `UPDATE nodes SET forked = ? WHERE id = ?`, true, b.Node); err != nil {
		return fmt.Errorf("ingest batch %d of node %q: flag the node: %w", b.FirstSeq, b.Node, err)
	}
	s.noteInstance(tx, b.Node, b.Instance, sub.Received, false)
	return &keepError{err: &SeqError{Err: ErrSecondSigner, Expected: head + 1, Instance: b.Instance, StoredInstance: storedInst,
		Detail: fmt.Sprintf("%s: instance %s signed it, the stored batch at first_seq %d is instance %s's; the chain stored first is kept",
			detail, instanceName(b.Instance), storedFirst, instanceName(storedInst))}}
}

// instanceName quotes an instance id for a message; an agent that sends
// none is "(none)".
func instanceName(id string) string {
	if id == "" {
		return "(none)"
	}
	return fmt.Sprintf("%q", id)
}

// checkRecords checks GPU ownership, the provider and the wall-time rule
// (package doc) against what is stored, and writes the new window totals.
// On any error the caller rolls the transaction back, totals included.
func (s *Store) checkRecords(ctx context.Context, tx *sql.Tx, b *protocol.Batch, provider string, f *Facts) error {
	own := make(map[string]bool, len(f.GPUs))
	for g := range f.GPUs {
		own[g] = true
	}
	foreign := map[string]bool{} // UUIDs checked not to be another node's
	sums := map[interval]int64{}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Provider != provider {
			return fmt.Errorf("%w: record seq %d: provider %q, node registered with %q", ErrInvalidRecord, r.Seq, r.Provider, provider)
		}
		if r.Kind == protocol.KindInventory {
			continue
		}
		if g, ok := f.GPUs[r.ParentUUID]; ok && !g.Retired.IsZero() && r.WindowEnd.After(g.Retired) {
			return fmt.Errorf("%w: record seq %d: window ends %s, after the registration of GPU %s to the node ended (%s)",
				ErrGPUNotRegistered, r.Seq, r.WindowEnd.UTC().Format(time.RFC3339Nano), r.ParentUUID, g.Retired.Format(time.RFC3339Nano))
		}
		if !own[r.ParentUUID] {
			if err := s.notForeign(ctx, tx, r.ParentUUID, b.Node, foreign); err != nil {
				return fmt.Errorf("record seq %d: parent_uuid: %w", r.Seq, err)
			}
			return fmt.Errorf("%w: record seq %d: parent_uuid %s", ErrGPUNotRegistered, r.Seq, r.ParentUUID)
		}
		// A unit's UUID must not be another node's GPU either: its windows
		// would count against that GPU's wall time.
		if r.GPUUUID != r.ParentUUID && !own[r.GPUUUID] {
			if err := s.notForeign(ctx, tx, r.GPUUUID, b.Node, foreign); err != nil {
				return fmt.Errorf("record seq %d: gpu_uuid: %w", r.Seq, err)
			}
		}
		iv := interval{r.GPUUUID, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()}
		sums[iv] += r.GPUMillis
		if sums[iv] > iv.end-iv.start {
			return fmt.Errorf("%w: unit %s window [%d, %d): %d ms in this batch", ErrOverWallTime, iv.unit, iv.start, iv.end, sums[iv])
		}
	}
	return s.addWindows(ctx, tx, b.Node, sums, own)
}

// notForeign returns ErrGPUClaimed if uuid is registered to a node other
// than node. checked caches UUIDs already found free in this transaction.
func (s *Store) notForeign(ctx context.Context, tx *sql.Tx, uuid, node string, checked map[string]bool) error {
	if checked[uuid] {
		return nil
	}
	var owner string
	err := s.queryRowTx(ctx, tx, `SELECT node_id FROM node_gpus WHERE gpu_uuid = ?`, uuid).Scan(&owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		checked[uuid] = true
		return nil
	case err != nil:
		return fmt.Errorf("look up GPU %s: %w", uuid, err)
	case owner != node:
		return fmt.Errorf("%w: %s", ErrGPUClaimed, uuid)
	}
	checked[uuid] = true
	return nil
}
