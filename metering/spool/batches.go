package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gpumeter/gpumeter/metering/ledger"
)

// Unacked returns up to limit (<= 0: all) unacknowledged batches in
// sequence order; dead-lettered batches are not among them. Each batch is
// checked against its stored hash first: one whose bytes changed on disk is
// moved to the quarantine bucket, the spool enters the needs-anchor state
// (the authority's head decides what is sent again) and Unacked returns
// ErrNeedsAnchor, as it does while that state lasts.
func (s *Spool) Unacked(ctx context.Context, limit int) ([]Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.needsAnchor {
		return nil, fmt.Errorf("list unacknowledged batches in spool %s: %w", s.opts.Path, ErrNeedsAnchor)
	}
	var out []Batch
	type bad struct {
		k, v   []byte
		reason string
	}
	var bads []bad
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBatches).Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			b, err := decodeBatch(k, v)
			if err == nil {
				err = checkBatchBytes(b)
			}
			if err != nil {
				bads = append(bads, bad{append([]byte{}, k...), append([]byte{}, v...), err.Error()})
				continue
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list unacknowledged batches in spool %s: %w", s.opts.Path, err)
	}
	if len(bads) == 0 {
		return out, nil
	}
	err = s.update(ctx, func(tx *bolt.Tx, st *state) error {
		for _, b := range bads {
			if err := s.quarantine(tx, st, bucketBatches, "batch", b.k, b.v, "stored bytes do not match the batch: "+b.reason); err != nil {
				return err
			}
			st.batchCount--
			st.batchBytes -= uint64(len(b.v))
		}
		st.needsAnchor = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quarantine damaged batch %d in spool %s: %w", u64(bads[0].k), s.opts.Path, err)
	}
	return nil, fmt.Errorf("batch %d in spool %s is damaged (%s), quarantined: %w", u64(bads[0].k), s.opts.Path, bads[0].reason, ErrNeedsAnchor)
}

// Ack records that the authority holds every record up to head: batches
// ending at or before head leave the unacknowledged ones; they are kept,
// byte for byte with their ack time, for Options.RetainAcked (retain.go),
// else deleted. The mark never goes backwards (an
// older head is ignored); a head beyond the highest sealed sequence is
// ErrAckAhead (the authority has records this spool never sealed).
func (s *Spool) Ack(ctx context.Context, head uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sealed := s.st.nextSeq - 1; head > sealed {
		return fmt.Errorf("ack %d in spool %s: %w (sealed up to %d)", head, s.opts.Path, ErrAckAhead, sealed)
	}
	if head <= s.st.acked {
		return nil
	}
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		bkt := tx.Bucket(bucketBatches)
		var done [][]byte
		var bytes uint64
		c := bkt.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			b, err := decodeBatch(k, v)
			if err != nil {
				return err
			}
			if b.LastSeq > head {
				break
			}
			done = append(done, append([]byte{}, k...))
			bytes += uint64(len(v))
		}
		for _, k := range done {
			if err := s.retain(tx, st, k, bkt.Get(k)); err != nil {
				return err
			}
			if err := bkt.Delete(k); err != nil {
				return fmt.Errorf("delete acknowledged batch %d: %w", u64(k), err)
			}
		}
		st.batchCount -= uint64(len(done))
		st.batchBytes -= bytes
		st.acked = head
		return s.pruneAcked(tx, st)
	})
	if err != nil {
		return fmt.Errorf("ack %d in spool %s: %w", head, s.opts.Path, err)
	}
	return nil
}

// DeadBatch is a batch the authority refused for good, kept for inspection.
type DeadBatch struct {
	Batch
	Reason string
	At     time.Time
	// ReanchoredAt is set once its records were sealed again (re-anchor).
	ReanchoredAt *time.Time
}

type deadValue struct {
	LastSeq  uint64    `json:"last_seq"`
	Hash     string    `json:"hash"`
	Envelope []byte    `json:"envelope"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	// ReanchoredAt: its records were sealed again onto the authority's
	// head (Anchor with ResealDeadLetters); the entry is evidence only.
	ReanchoredAt *time.Time `json:"reanchored_at,omitempty"`
}

// DeadLetter moves the unacknowledged batch starting at firstSeq to the
// dead-letter bucket with reason. Dead letters are never deleted: they are
// usage that was metered and not accepted, and someone must look at them.
func (s *Spool) DeadLetter(ctx context.Context, firstSeq uint64, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		bkt := tx.Bucket(bucketBatches)
		k := be(firstSeq)
		v := bkt.Get(k)
		if v == nil {
			return fmt.Errorf("%w starting at seq %d", ErrNotFound, firstSeq)
		}
		b, err := decodeBatch(k, v)
		if err != nil {
			return err
		}
		dv, err := json.Marshal(deadValue{LastSeq: b.LastSeq, Hash: b.Hash, Envelope: b.Envelope, Reason: reason, At: s.opts.Now().UTC()})
		if err != nil {
			return fmt.Errorf("encode dead letter: %w", err)
		}
		if err := tx.Bucket(bucketDeadLetter).Put(k, dv); err != nil {
			return fmt.Errorf("store dead letter: %w", err)
		}
		if err := bkt.Delete(k); err != nil {
			return fmt.Errorf("delete dead-lettered batch: %w", err)
		}
		st.batchCount--
		st.batchBytes -= uint64(len(v))
		st.deadLetters++
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead-letter batch %d in spool %s: %w", firstSeq, s.opts.Path, err)
	}
	return nil
}

// DeadLetters lists the dead-lettered batches in sequence order.
func (s *Spool) DeadLetters(ctx context.Context) ([]DeadBatch, error) {
	return listBucket(ctx, s, bucketDeadLetter, "dead letters", func(k, v []byte) (DeadBatch, error) {
		var d deadValue
		if err := json.Unmarshal(v, &d); err != nil {
			return DeadBatch{}, fmt.Errorf("decode dead letter %d: %w", u64(k), err)
		}
		return DeadBatch{
			Batch:  Batch{FirstSeq: u64(k), LastSeq: d.LastSeq, Hash: d.Hash, Envelope: d.Envelope},
			Reason: d.Reason, At: d.At, ReanchoredAt: d.ReanchoredAt,
		}, nil
	})
}

// Requeue moves dead-lettered batches back among the unacknowledged ones,
// byte for byte as they were sealed (nothing is signed again), for when the
// cause of the refusal was fixed at the authority: the one starting at
// firstSeq, or all of them (all). Re-anchored dead letters and batches
// whose bytes no longer match their hash are not requeued. It returns the
// batches requeued.
func (s *Spool) Requeue(ctx context.Context, firstSeq uint64, all bool) ([]Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Batch
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		dl := tx.Bucket(bucketDeadLetter)
		type item struct {
			k []byte
			d deadValue
		}
		var items []item
		err := dl.ForEach(func(k, v []byte) error {
			if !all && u64(k) != firstSeq {
				return nil
			}
			var d deadValue
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", u64(k), err)
			}
			items = append(items, item{append([]byte{}, k...), d})
			return nil
		})
		if err != nil {
			return err
		}
		if !all && len(items) == 0 {
			return fmt.Errorf("%w: no dead letter starts at seq %d", ErrNotFound, firstSeq)
		}
		for _, it := range items {
			b := Batch{FirstSeq: u64(it.k), LastSeq: it.d.LastSeq, Hash: it.d.Hash, Envelope: it.d.Envelope}
			if it.d.ReanchoredAt != nil {
				if !all {
					return fmt.Errorf("dead letter %d..%d was re-anchored at %s: its records were sealed again", b.FirstSeq, b.LastSeq, it.d.ReanchoredAt.Format(time.RFC3339))
				}
				continue
			}
			if err := checkBatchBytes(b); err != nil {
				if !all {
					return fmt.Errorf("dead letter %d..%d is damaged: %w", b.FirstSeq, b.LastSeq, err)
				}
				continue
			}
			val, err := encodeBatch(ledger.Sealed{FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Hash: b.Hash, Envelope: b.Envelope})
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketBatches).Put(it.k, val); err != nil {
				return fmt.Errorf("requeue batch %d: %w", b.FirstSeq, err)
			}
			if err := dl.Delete(it.k); err != nil {
				return fmt.Errorf("requeue batch %d: %w", b.FirstSeq, err)
			}
			st.batchCount++
			st.batchBytes += uint64(len(val))
			st.deadLetters--
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("requeue dead letters in spool %s: %w", s.opts.Path, err)
	}
	return out, nil
}
