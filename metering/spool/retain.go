package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention of acknowledged batches.
//
// An authority restored from a backup has lost what it acknowledged after
// the backup. The agent can send those batches again only if it still has
// them, unchanged: so Ack moves a batch into the acked bucket (key:
// first_seq; value: the ack time in unix ms, 8 bytes, then the batch's
// stored value) instead of deleting it, for Options.RetainAcked. Retained
// bytes count against Options.MaxBytes, and they are the first to go when
// the spool is over it (oldest first), before any pending record is merged
// or refused: the authority already holds them.

// ErrNotRetained: the batches an authority lost are no longer retained
// here (older than spool.retain_acked, or dropped for the cap): that range
// of usage can only be recorded as lost.
var ErrNotRetained = errors.New("acknowledged batches no longer retained")

// RetainedBatch is an acknowledged batch kept for a restored authority.
type RetainedBatch struct {
	Batch
	AckedAt time.Time
}

// retain stores the batch value v (key k) among the acknowledged ones.
// The caller holds s.mu inside update.
func (s *Spool) retain(tx *bolt.Tx, st *state, k, v []byte) error {
	if s.opts.RetainAcked <= 0 {
		return nil
	}
	if old := tx.Bucket(bucketAcked).Get(k); old != nil {
		if err := dropAcked(tx, st, k, old); err != nil {
			return err
		}
	}
	val := append(be(uint64(s.opts.Now().UnixMilli())), v...)
	if err := tx.Bucket(bucketAcked).Put(append([]byte{}, k...), val); err != nil {
		return fmt.Errorf("retain acknowledged batch %d: %w", u64(k), err)
	}
	st.ackedCount++
	st.ackedBytes += uint64(len(val))
	return nil
}

// pruneAcked deletes the retained batches acknowledged more than
// RetainAcked ago (oldest first; ack times grow with the sequence).
func (s *Spool) pruneAcked(tx *bolt.Tx, st *state) error {
	cutoff := uint64(s.opts.Now().Add(-s.opts.RetainAcked).UnixMilli())
	for {
		k, v := tx.Bucket(bucketAcked).Cursor().First()
		if k == nil || len(v) >= 8 && s.opts.RetainAcked > 0 && u64(v[:8]) >= cutoff {
			return nil
		}
		if err := dropAcked(tx, st, k, v); err != nil {
			return err
		}
	}
}

// dropOldestAcked deletes the oldest retained batch (over the cap); it
// reports false when none is retained.
func dropOldestAcked(tx *bolt.Tx, st *state) (bool, error) {
	k, v := tx.Bucket(bucketAcked).Cursor().First()
	if k == nil {
		return false, nil
	}
	return true, dropAcked(tx, st, k, v)
}

func dropAcked(tx *bolt.Tx, st *state, k, v []byte) error {
	n := uint64(len(v))
	if err := tx.Bucket(bucketAcked).Delete(append([]byte{}, k...)); err != nil {
		return fmt.Errorf("drop retained batch %d: %w", u64(k), err)
	}
	st.ackedCount--
	st.ackedBytes -= n
	return nil
}

// dropRetainedAfter deletes the retained batches that end after head.
func dropRetainedAfter(tx *bolt.Tx, st *state, head uint64) error {
	type kv struct{ k, v []byte }
	var drop []kv
	err := tx.Bucket(bucketAcked).ForEach(func(k, v []byte) error {
		if len(v) < 48 || u64(v[8:16]) > head {
			drop = append(drop, kv{append([]byte{}, k...), append([]byte{}, v...)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range drop {
		if err := dropAcked(tx, st, d.k, d.v); err != nil {
			return err
		}
	}
	return nil
}

func decodeRetained(k, v []byte) (RetainedBatch, error) {
	if len(v) < 8 {
		return RetainedBatch{}, fmt.Errorf("retained batch at key %x: %d bytes, too short", k, len(v))
	}
	b, err := decodeBatch(k, v[8:])
	if err != nil {
		return RetainedBatch{}, err
	}
	return RetainedBatch{Batch: b, AckedAt: time.UnixMilli(int64(u64(v[:8]))).UTC()}, nil
}

// Retained lists the retained acknowledged batches in sequence order.
func (s *Spool) Retained(ctx context.Context) ([]RetainedBatch, error) {
	return listBucket(ctx, s, bucketAcked, "retained batches", decodeRetained)
}

// Unack moves the acknowledged mark back to head, for an authority
// restored from a backup that holds the node's records only up to head:
// the retained batches head+1..acked become unacknowledged again, byte
// for byte, to be sent again. They must all be retained, the first
// starting at head+1 and each continuing the one before; otherwise
// nothing changes and the error (ErrNotRetained) names the range lost.
func (s *Spool) Unack(ctx context.Context, head uint64) ([]Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if head >= s.st.acked {
		return nil, nil
	}
	var out []Batch
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		acked := tx.Bucket(bucketAcked)
		next := head + 1
		type mv struct{ k, v []byte }
		var mvs []mv
		c := acked.Cursor()
		for k, v := c.Seek(be(next)); k != nil && next <= st.acked; k, v = c.Next() {
			b, err := decodeRetained(k, v)
			if err != nil {
				return err
			}
			if b.FirstSeq != next || checkBatchBytes(b.Batch) != nil {
				break
			}
			mvs = append(mvs, mv{append([]byte{}, k...), append([]byte{}, v...)})
			out = append(out, b.Batch)
			next = b.LastSeq + 1
		}
		if next <= st.acked {
			return fmt.Errorf("%w: seqs %d..%d (the authority holds up to %d, this spool acknowledged up to %d)", ErrNotRetained, next, st.acked, head, st.acked)
		}
		bkt := tx.Bucket(bucketBatches)
		for _, m := range mvs {
			if err := bkt.Put(m.k, m.v[8:]); err != nil {
				return fmt.Errorf("unacknowledge batch %d: %w", u64(m.k), err)
			}
			if err := dropAcked(tx, st, m.k, m.v); err != nil {
				return err
			}
			st.batchCount++
			st.batchBytes += uint64(len(m.v) - 8)
		}
		st.acked = head
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("move the acknowledged mark of spool %s back to %d: %w", s.opts.Path, head, err)
	}
	return out, nil
}

// PrevHash is the prev_hash the batch's signed payload chains to: the
// hash of the batch before it ("" for the node's first).
func (b Batch) PrevHash() (string, error) {
	p, err := batchPayload(b.Envelope)
	if err != nil {
		return "", fmt.Errorf("batch %d..%d: %w", b.FirstSeq, b.LastSeq, err)
	}
	var pb struct {
		PrevHash string `json:"prev_hash"`
	}
	if err := json.Unmarshal(p, &pb); err != nil {
		return "", fmt.Errorf("batch %d..%d payload: %w", b.FirstSeq, b.LastSeq, err)
	}
	return pb.PrevHash, nil
}
