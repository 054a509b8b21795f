package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// entry is one value of the pending bucket: the records of one window (as
// the meter closed it), one inventory record, or one merged run. SealNext
// takes whole entries, so a window is split across batches only when it
// alone is larger than a batch.
type entry struct {
	Merged  bool
	Records []protocol.Record
}

// Stored as one flag byte, then the records' JSON array: merging skips
// merged entries by their first byte, without decoding them.
const (
	flagWindow byte = 0
	flagMerged byte = 1
)

func encodeEntry(e entry) ([]byte, error) {
	js, err := json.Marshal(e.Records)
	if err != nil {
		return nil, fmt.Errorf("encode pending records: %w", err)
	}
	flag := flagWindow
	if e.Merged {
		flag = flagMerged
	}
	return append([]byte{flag}, js...), nil
}

// errUndecodable is wrapped by decodeEntry's errors: the entry's bytes are
// damaged (scrubPending quarantines it).
var errUndecodable = errors.New("undecodable pending entry")

func decodeEntry(k, v []byte) (entry, error) {
	if len(v) < 1 || v[0] > flagMerged {
		return entry{}, fmt.Errorf("%w %d: unknown format", errUndecodable, u64(k))
	}
	e := entry{Merged: v[0] == flagMerged}
	if err := json.Unmarshal(v[1:], &e.Records); err != nil {
		return entry{}, fmt.Errorf("%w %d: %v", errUndecodable, u64(k), err)
	}
	for i := range e.Records {
		if err := ledger.CheckRecord(&e.Records[i]); err != nil {
			return entry{}, fmt.Errorf("%w %d: %v", errUndecodable, u64(k), err)
		}
	}
	return e, nil
}

// Append stores closed windows' records (unsealed, unnumbered) and the
// meter's checkpoint in one fsynced transaction: after a crash the spool
// has both or neither. A nil checkpoint leaves the stored one unchanged.
//
// Over Options.MaxBytes the oldest pending records are merged first (see
// the package doc); if that is not enough it returns ErrFull and stores
// nothing, the checkpoint included. Invalid records (ledger.CheckRecord)
// are refused, so they never block sealing.
func (s *Spool) Append(ctx context.Context, recs []protocol.Record, checkpoint []byte) error {
	for i := range recs {
		if err := ledger.CheckRecord(&recs[i]); err != nil {
			return fmt.Errorf("append to spool %s: %w", s.opts.Path, err)
		}
	}
	groups := byWindow(recs)
	vals := make([][]byte, len(groups))
	for i, g := range groups {
		v, err := encodeEntry(entry{Records: g})
		if err != nil {
			return fmt.Errorf("append to spool %s: %w", s.opts.Path, err)
		}
		vals[i] = v
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		pending := tx.Bucket(bucketPending)
		for i, v := range vals {
			if err := pending.Put(be(st.pendingKey), v); err != nil {
				return fmt.Errorf("store records: %w", err)
			}
			st.pendingKey++
			st.pendingRecords += uint64(len(groups[i]))
			st.pendingBytes += uint64(len(v))
		}
		if checkpoint != nil {
			if err := tx.Bucket(bucketMeta).Put(keyCheckpoint, checkpoint); err != nil {
				return fmt.Errorf("store checkpoint: %w", err)
			}
		}
		if _, err := s.insertLostGap(tx, st); err != nil {
			return err
		}
		for s.opts.MaxBytes > 0 && st.storedBytes() > s.opts.MaxBytes {
			// Retained acknowledged batches go first: the authority
			// holds them.
			if dropped, err := dropOldestAcked(tx, st); err != nil || dropped {
				if err != nil {
					return err
				}
				continue
			}
			merged, err := mergeOldest(tx, st, s.opts.MergeWindow)
			if errors.Is(err, errUndecodable) {
				// Quarantine the damaged entry, then merge on.
				if _, err := s.scrubPending(tx, st); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if !merged {
				// Roll back: the records and the checkpoint stay out
				// together; the caller keeps them in memory.
				return fmt.Errorf("%w: %d bytes stored over the cap of %d", ErrFull, st.storedBytes(), s.opts.MaxBytes)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d records to spool %s: %w", len(recs), s.opts.Path, err)
	}
	return nil
}

// byWindow splits recs into entries: runs of consecutive records with one
// window start (the meter emits windows in order, so a run is one window),
// and each inventory record alone, in its place. An inventory record is an
// instant (window start == end) that must stay ahead of the records that
// follow it; an entry of its own keeps it out of any window's entry and
// lets merging see it (mergeRecords passes it through untouched).
func byWindow(recs []protocol.Record) [][]protocol.Record {
	var out [][]protocol.Record
	for i, r := range recs {
		n := len(out)
		if r.Kind == protocol.KindInventory || n == 0 || out[n-1][0].Kind == protocol.KindInventory ||
			!out[n-1][0].WindowStart.Equal(r.WindowStart) {
			out = append(out, recs[i:i+1:i+1])
			continue
		}
		out[n-1] = append(out[n-1], r)
	}
	return out
}

// mergeOldest replaces the oldest run of consecutive unmerged pending
// entries that share one merge bucket with one merged entry. It reports
// false when every pending entry is already merged.
//
// Only a run of consecutive entries is merged: entries are in time order,
// so the merged records' windows [min start, max end) cannot overlap
// records of the same unit outside the run (sealed ones are older, later
// ones newer).
func mergeOldest(tx *bolt.Tx, st *state, width time.Duration) (bool, error) {
	c := tx.Bucket(bucketPending).Cursor()
	var (
		keys   [][]byte
		recs   []protocol.Record
		bucket int64
		oldLen uint64
	)
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) > 0 && v[0] == flagMerged {
			if len(keys) > 0 {
				break
			}
			continue
		}
		e, err := decodeEntry(k, v)
		if err != nil {
			return false, err
		}
		if len(e.Records) == 0 {
			continue
		}
		b := mergeBucket(e.Records[0].WindowStart, width)
		if len(keys) > 0 && b != bucket {
			break
		}
		bucket = b
		keys = append(keys, append([]byte{}, k...))
		recs = append(recs, e.Records...)
		oldLen += uint64(len(v))
	}
	if len(keys) == 0 {
		return false, nil
	}
	out := mergeRecords(recs, width)
	v, err := encodeEntry(entry{Merged: true, Records: out})
	if err != nil {
		return false, err
	}
	pending := tx.Bucket(bucketPending)
	for _, k := range keys[1:] {
		if err := pending.Delete(k); err != nil {
			return false, fmt.Errorf("delete merged entry: %w", err)
		}
	}
	// The merged entry takes the oldest key: it stays first in line.
	if err := pending.Put(keys[0], v); err != nil {
		return false, fmt.Errorf("store merged entry: %w", err)
	}
	st.pendingRecords = st.pendingRecords - uint64(len(recs)) + uint64(len(out))
	st.pendingBytes = st.pendingBytes - oldLen + uint64(len(v))
	return true, nil
}

// scrubPending moves every pending entry that does not decode to the
// quarantine bucket, so that one damaged entry never wedges sealing or
// merging, and recounts the pending counters from what is left. It
// returns the number quarantined. It decodes every entry, so callers run
// it only after a decode failed (errUndecodable).
func (s *Spool) scrubPending(tx *bolt.Tx, st *state) (int, error) {
	type bad struct {
		k, v   []byte
		reason string
	}
	var bads []bad
	var recs, bytes uint64
	c := tx.Bucket(bucketPending).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := decodeEntry(k, v)
		if err != nil {
			bads = append(bads, bad{append([]byte{}, k...), append([]byte{}, v...), err.Error()})
			continue
		}
		recs += uint64(len(e.Records))
		bytes += uint64(len(v))
	}
	for _, b := range bads {
		if err := s.quarantine(tx, st, bucketPending, "pending", b.k, b.v, b.reason); err != nil {
			return 0, err
		}
	}
	if len(bads) > 0 {
		st.pendingRecords, st.pendingBytes = recs, bytes
	}
	return len(bads), nil
}
