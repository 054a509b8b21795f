package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gpumeter/gpumeter/protocol"
)

// NeedsAnchor reports whether the spool seals nothing until Anchor: it
// replaced a damaged file, or quarantined a sealed batch.
func (s *Spool) NeedsAnchor() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.needsAnchor
}

// AnchorOptions adjust Anchor.
type AnchorOptions struct {
	// ResealDeadLetters: dead-lettered batches the authority does not hold
	// go back to pending too, to be sealed again onto its head; their old
	// envelopes stay in the dead-letter bucket, marked re-anchored, as
	// evidence (gpumeter spool re-anchor).
	ResealDeadLetters bool
}

// AnchorResult says what Anchor did.
type AnchorResult struct {
	Head              uint64
	AckedBatches      int // unacknowledged batches the authority already held
	UnsealedBatches   int // batches whose records went back to pending
	UnsealedRecords   int
	ResealDeadLetters int // dead letters among UnsealedBatches
	LostBatches       int // batches whose bytes could not be read (quarantined)
	// GapFrom is where the spool_lost gap starts (the authority's last
	// window end); GapRecords the gap records stored now. A gap waiting
	// for the first metered window (nothing pending yet) has GapPending.
	GapFrom    time.Time
	GapRecords int
	GapPending bool
}

// Anchor continues this spool's chain from the authority's head: next_seq
// becomes head+1 and last_hash headHash. Unacknowledged batches ending at
// or before head are acknowledged; the records of those after it go back
// to pending, ahead of what is pending, to be sealed again (they never
// reached the authority, so no one holds their old signatures). With
// lastWindowEnd (the authority's latest window end for the node) the time
// from it to the first window pending is recorded as spool_lost gap
// records, per unit and metering window; if nothing is pending yet, the
// gap is stored with the next Append. The needs-anchor state is cleared.
// All of it is one transaction.
func (s *Spool) Anchor(ctx context.Context, head uint64, headHash string, lastWindowEnd *time.Time, opts AnchorOptions) (AnchorResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res AnchorResult
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		res = AnchorResult{Head: head}
		type back struct {
			first uint64
			recs  []protocol.Record
		}
		var backs []back
		batches := tx.Bucket(bucketBatches)
		var keys [][]byte
		c := batches.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			keys = append(keys, append([]byte{}, k...))
			b, err := decodeBatch(k, v)
			if err != nil || b.LastSeq <= head {
				if err == nil {
					res.AckedBatches++
				}
				continue
			}
			recs, err := batchRecords(b.Envelope)
			if err == nil && uint64(len(recs)) != b.LastSeq-b.FirstSeq+1 {
				err = fmt.Errorf("%d records for seqs %d..%d", len(recs), b.FirstSeq, b.LastSeq)
			}
			if err != nil {
				res.LostBatches++
				continue
			}
			if b.FirstSeq <= head {
				recs = recs[head-b.FirstSeq+1:]
			}
			backs = append(backs, back{b.FirstSeq, recs})
			res.UnsealedBatches++
		}
		for _, k := range keys {
			if err := batches.Delete(k); err != nil {
				return fmt.Errorf("delete batch %d: %w", u64(k), err)
			}
		}
		st.batchCount, st.batchBytes = 0, 0
		if opts.ResealDeadLetters {
			dl := tx.Bucket(bucketDeadLetter)
			type upd struct {
				k []byte
				v []byte
			}
			var upds []upd
			err := dl.ForEach(func(k, v []byte) error {
				var d deadValue
				if err := json.Unmarshal(v, &d); err != nil || d.ReanchoredAt != nil || d.LastSeq <= head {
					return nil
				}
				recs, err := batchRecords(d.Envelope)
				if err != nil || uint64(len(recs)) != d.LastSeq-u64(k)+1 {
					res.LostBatches++
					return nil
				}
				if u64(k) <= head {
					recs = recs[head-u64(k)+1:]
				}
				backs = append(backs, back{u64(k), recs})
				res.UnsealedBatches++
				res.ResealDeadLetters++
				at := s.opts.Now().UTC()
				d.ReanchoredAt = &at
				nv, err := json.Marshal(d)
				if err != nil {
					return err
				}
				upds = append(upds, upd{append([]byte{}, k...), nv})
				return nil
			})
			if err != nil {
				return fmt.Errorf("read dead letters: %w", err)
			}
			for _, u := range upds {
				if err := dl.Put(u.k, u.v); err != nil {
					return fmt.Errorf("mark dead letter %d re-anchored: %w", u64(u.k), err)
				}
				st.deadLetters--
			}
		}
		slices.SortFunc(backs, func(a, b back) int {
			switch {
			case a.first < b.first:
				return -1
			case a.first > b.first:
				return 1
			}
			return 0
		})
		var vals [][]byte
		for _, b := range backs {
			res.UnsealedRecords += len(b.recs)
			for _, g := range byWindow(b.recs) {
				v, err := encodeEntry(entry{Records: g})
				if err != nil {
					return err
				}
				vals = append(vals, v)
			}
		}
		if err := prependPending(tx, st, vals, 0); err != nil {
			return err
		}
		// Retained batches past head belong to the chain given up here:
		// never to be sent again.
		if err := dropRetainedAfter(tx, st, head); err != nil {
			return err
		}
		st.nextSeq, st.lastHash, st.acked = head+1, headHash, head
		st.needsAnchor = false
		if lastWindowEnd != nil {
			st.hasLostFrom, st.lostFrom = true, lastWindowEnd.UnixMilli()
			res.GapFrom = lastWindowEnd.UTC()
		}
		n, err := s.insertLostGap(tx, st)
		if err != nil {
			return err
		}
		res.GapRecords, res.GapPending = n, st.hasLostFrom
		return nil
	})
	if err != nil {
		return AnchorResult{}, fmt.Errorf("anchor spool %s on head %d: %w", s.opts.Path, head, err)
	}
	return res, nil
}

// prependPending rewrites the pending bucket as: its first skip entries,
// vals, then the rest, numbered from 0, and counts vals in. The pending
// bucket is small whenever this runs (a fresh or blocked spool).
func prependPending(tx *bolt.Tx, st *state, vals [][]byte, skip int) error {
	if len(vals) == 0 {
		return nil
	}
	pending := tx.Bucket(bucketPending)
	var keys, old [][]byte
	c := pending.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		keys = append(keys, append([]byte{}, k...))
		old = append(old, append([]byte{}, v...))
	}
	for _, k := range keys {
		if err := pending.Delete(k); err != nil {
			return fmt.Errorf("rewrite pending: %w", err)
		}
	}
	all := slices.Concat(old[:skip], vals, old[skip:])
	for i, v := range all {
		if err := pending.Put(be(uint64(i)), v); err != nil {
			return fmt.Errorf("rewrite pending: %w", err)
		}
	}
	for _, v := range vals {
		e, err := decodeEntry(nil, v)
		if err != nil {
			return err
		}
		st.pendingRecords += uint64(len(e.Records))
		st.pendingBytes += uint64(len(v))
	}
	st.pendingKey = uint64(len(all))
	return nil
}

// insertLostGap stores the spool_lost gap from st.lostFrom to the start
// of the first pending entry that is not an inventory, for the units of
// that entry, ahead of it; it does nothing (and keeps lostFrom) while no
// such entry is pending. It returns the number of gap records.
func (s *Spool) insertLostGap(tx *bolt.Tx, st *state) (int, error) {
	if !st.hasLostFrom {
		return 0, nil
	}
	c := tx.Bucket(bucketPending).Cursor()
	idx := 0
	var first []protocol.Record
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := decodeEntry(k, v)
		if err == nil {
			for _, r := range e.Records {
				if r.Kind != protocol.KindInventory {
					first = e.Records
					break
				}
			}
		}
		if first != nil {
			break
		}
		idx++
	}
	if first == nil {
		return 0, nil
	}
	st.hasLostFrom = false
	to := first[0].WindowStart
	var units []protocol.Record
	seen := map[string]bool{}
	for _, r := range first {
		if r.Kind == protocol.KindInventory {
			continue
		}
		if r.WindowStart.Before(to) {
			to = r.WindowStart
		}
		if !seen[r.GPUUUID] {
			seen[r.GPUUUID] = true
			units = append(units, r)
		}
	}
	gap := LostGap(units, time.UnixMilli(st.lostFrom).UTC(), to, s.opts.Window)
	var vals [][]byte
	for _, g := range byWindow(gap) {
		v, err := encodeEntry(entry{Records: g})
		if err != nil {
			return 0, err
		}
		vals = append(vals, v)
	}
	return len(gap), prependPending(tx, st, vals, idx)
}

// LostGap is the spool_lost gap over [from, to) for the units of the
// template records (their node, provider and unit identity are copied):
// one record per unit and aligned window of width window (0: one per unit),
// as the meter records agent_down.
func LostGap(units []protocol.Record, from, to time.Time, window time.Duration) []protocol.Record {
	var out []protocol.Record
	a, b := from.UnixMilli(), to.UnixMilli()
	w := window.Milliseconds()
	for a < b {
		end := b
		if w > 0 {
			end = min(b, (a/w+1)*w)
		}
		for _, u := range units {
			r := protocol.Record{
				Node: u.Node, Provider: u.Provider,
				WindowStart: time.UnixMilli(a).UTC(), WindowEnd: time.UnixMilli(end).UTC(),
				GPUUUID: u.GPUUUID, ParentUUID: u.ParentUUID, Model: u.Model, MIGProfile: u.MIGProfile,
				SliceNum: u.SliceNum, SliceDen: u.SliceDen,
				Kind: protocol.KindGap, GapReason: protocol.GapSpoolLost, GPUMillis: end - a,
				UtilizationPercent: -1, EnergyMillijoules: -1,
			}
			r.ID = r.ComputeID()
			out = append(out, r)
		}
		a = end
	}
	return out
}
