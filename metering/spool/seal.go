package spool

import (
	"context"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// SealFunc signs records as the batch starting at firstSeq whose previous
// batch has hash prevHash: (*ledger.Sealer).Seal with a context bound.
type SealFunc func(firstSeq uint64, prevHash string, recs []protocol.Record) (ledger.Sealed, error)

// Batch is a sealed, unacknowledged batch as stored.
type Batch struct {
	FirstSeq uint64
	LastSeq  uint64
	Hash     string
	Envelope []byte
}

// SealNext seals the oldest pending records, at most maxRecords (0 or more
// than protocol.MaxRecordsPerBatch: protocol.MaxRecordsPerBatch), into the next
// batch and stores it, in one transaction: the sequence numbers are taken
// when the batch is committed and never again. Whole pending entries
// (windows) are taken; only an entry larger than maxRecords is split. It
// reports false when nothing is pending. If seal fails nothing changes.
func (s *Spool) SealNext(ctx context.Context, seal SealFunc, maxRecords int) (ledger.Sealed, bool, error) {
	if maxRecords <= 0 || maxRecords > protocol.MaxRecordsPerBatch {
		maxRecords = protocol.MaxRecordsPerBatch
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.needsAnchor {
		return ledger.Sealed{}, false, fmt.Errorf("seal next batch in spool %s: %w", s.opts.Path, ErrNeedsAnchor)
	}
	var sealed ledger.Sealed
	var ok bool
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		pending := tx.Bucket(bucketPending)
	scan:
		var (
			taken  [][]byte // whole entries, deleted
			recs   []protocol.Record
			oldLen uint64
			split  []byte // key of the entry split, if any
			rest   entry
		)
		c := pending.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := decodeEntry(k, v)
			if err != nil {
				// A damaged entry must not wedge sealing: quarantine
				// it (and any other) and take the entries again.
				if _, err := s.scrubPending(tx, st); err != nil {
					return err
				}
				goto scan
			}
			if len(recs)+len(e.Records) <= maxRecords {
				taken = append(taken, append([]byte{}, k...))
				recs = append(recs, e.Records...)
				oldLen += uint64(len(v))
				continue
			}
			if len(recs) == 0 {
				// One window larger than a batch: the only split.
				split = append([]byte{}, k...)
				recs = e.Records[:maxRecords]
				rest = entry{Merged: e.Merged, Records: e.Records[maxRecords:]}
				oldLen += uint64(len(v))
			}
			break
		}
		if len(recs) == 0 {
			return nil
		}
		var err error
		sealed, err = seal(st.nextSeq, st.lastHash, recs)
		if err != nil {
			return fmt.Errorf("seal records from seq %d: %w", st.nextSeq, err)
		}
		if err := checkSealed(sealed, st.nextSeq, len(recs)); err != nil {
			return err
		}
		val, err := encodeBatch(sealed)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketBatches).Put(be(sealed.FirstSeq), val); err != nil {
			return fmt.Errorf("store batch %d: %w", sealed.FirstSeq, err)
		}
		for _, k := range taken {
			if err := pending.Delete(k); err != nil {
				return fmt.Errorf("delete sealed pending entry: %w", err)
			}
		}
		var restLen uint64
		if split != nil {
			v, err := encodeEntry(rest)
			if err != nil {
				return err
			}
			if err := pending.Put(split, v); err != nil {
				return fmt.Errorf("store rest of split entry: %w", err)
			}
			restLen = uint64(len(v))
		}
		st.pendingRecords -= uint64(len(recs))
		st.pendingBytes = st.pendingBytes - oldLen + restLen
		st.batchCount++
		st.batchBytes += uint64(len(val))
		st.nextSeq = sealed.LastSeq + 1
		st.lastHash = sealed.Hash
		ok = true
		return nil
	})
	if err != nil {
		return ledger.Sealed{}, false, fmt.Errorf("seal next batch in spool %s: %w", s.opts.Path, err)
	}
	return sealed, ok, nil
}

// checkSealed refuses a sealer answer that would break the sequence.
func checkSealed(s ledger.Sealed, first uint64, n int) error {
	if s.FirstSeq != first || s.LastSeq != first+uint64(n)-1 {
		return fmt.Errorf("sealer returned seqs %d..%d for %d records from %d", s.FirstSeq, s.LastSeq, n, first)
	}
	if h, err := hex.DecodeString(s.Hash); err != nil || len(h) != 32 {
		return fmt.Errorf("sealer returned hash %q, want 64 hex digits", s.Hash)
	}
	if len(s.Envelope) == 0 {
		return fmt.Errorf("sealer returned an empty envelope")
	}
	return nil
}

// A stored batch: 8-byte big-endian last seq, 32-byte hash, envelope.
func encodeBatch(s ledger.Sealed) ([]byte, error) {
	h, err := hex.DecodeString(s.Hash)
	if err != nil {
		return nil, fmt.Errorf("encode batch %d hash: %w", s.FirstSeq, err)
	}
	v := make([]byte, 0, 40+len(s.Envelope))
	v = append(v, be(s.LastSeq)...)
	v = append(v, h...)
	return append(v, s.Envelope...), nil
}

// decodeBatch copies: bbolt's memory is valid only inside the transaction.
func decodeBatch(k, v []byte) (Batch, error) {
	if len(k) != 8 || len(v) < 40 {
		return Batch{}, fmt.Errorf("stored batch at key %x: %d bytes, too short", k, len(v))
	}
	return Batch{
		FirstSeq: u64(k),
		LastSeq:  u64(v[:8]),
		Hash:     hex.EncodeToString(v[8:40]),
		Envelope: append([]byte{}, v[40:]...),
	}, nil
}
