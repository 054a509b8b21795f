package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Unacked returns up to limit (<= 0: all) unacknowledged batches in
// sequence order; dead-lettered batches are not among them.
func (s *Spool) Unacked(ctx context.Context, limit int) ([]Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Batch
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBatches).Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			b, err := decodeBatch(k, v)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list unacknowledged batches in spool %s: %w", s.opts.Path, err)
	}
	return out, nil
}

// Ack records that the authority holds every record up to head: batches
// ending at or before head are deleted. The mark never goes backwards (an
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
			if err := bkt.Delete(k); err != nil {
				return fmt.Errorf("delete acknowledged batch %d: %w", u64(k), err)
			}
		}
		st.batchCount -= uint64(len(done))
		st.batchBytes -= bytes
		st.acked = head
		return nil
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
}

type deadValue struct {
	LastSeq  uint64    `json:"last_seq"`
	Hash     string    `json:"hash"`
	Envelope []byte    `json:"envelope"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
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
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DeadBatch
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeadLetter).ForEach(func(k, v []byte) error {
			var d deadValue
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", u64(k), err)
			}
			out = append(out, DeadBatch{
				Batch:  Batch{FirstSeq: u64(k), LastSeq: d.LastSeq, Hash: d.Hash, Envelope: d.Envelope},
				Reason: d.Reason, At: d.At,
			})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters in spool %s: %w", s.opts.Path, err)
	}
	return out, nil
}
