package spool

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// What the agent keeps of the authority's verifiable log (the reporter
// checks; the spool only stores, in the same fsynced file as the batches):
//
//	logcheckpoints  key: tree size, 8-byte big-endian; value: the signed
//	                checkpoint note as served. A bounded history: the
//	                newest, and older ones for checking a restored
//	                authority's smaller tree against.
//	meta log_key    the log's verifier key, pinned on first use when the
//	                config names none.
//	meta log_conflict
//	                why delivery is held: the log contradicted what this
//	                spool kept. Only the operator clears it (AcceptLog).

// KeptCheckpoint is a checkpoint note kept from the authority's log.
type KeptCheckpoint struct {
	Size uint64
	Note []byte
}

// Checkpoints lists the kept checkpoints, smallest tree first.
func (s *Spool) Checkpoints(ctx context.Context) ([]KeptCheckpoint, error) {
	return listBucket(ctx, s, bucketLog, "kept log checkpoints", func(k, v []byte) (KeptCheckpoint, error) {
		return KeptCheckpoint{Size: u64(k), Note: append([]byte{}, v...)}, nil
	})
}

// LogSize is the size of the newest kept checkpoint (0: none), what the
// agent sends in protocol.LogSizeHeader.
func (s *Spool) LogSize() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	_ = s.view(context.Background(), func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLog).Cursor().Last(); k != nil {
			n = u64(k)
		}
		return nil
	})
	return n
}

// KeepCheckpoint stores a verified checkpoint. Kept checkpoints of larger
// trees are deleted (the caller verified this one against the newest kept
// of a size at most its own: a larger one kept belongs to a history the
// authority lost to a restore), and then the oldest beyond keep (at least
// 1). It returns the sizes deleted for being larger.
func (s *Spool) KeepCheckpoint(ctx context.Context, size uint64, note []byte, keep int) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var larger []uint64
	err := s.update(ctx, func(tx *bolt.Tx, _ *state) error {
		b := tx.Bucket(bucketLog)
		var smaller, drop [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			switch {
			case u64(k) > size:
				drop = append(drop, append([]byte{}, k...))
				larger = append(larger, u64(k))
			case u64(k) < size:
				smaller = append(smaller, append([]byte{}, k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := b.Put(be(size), note); err != nil {
			return fmt.Errorf("keep log checkpoint of size %d: %w", size, err)
		}
		// smaller holds the smaller ones, oldest first; with the new one,
		// at most max(keep, 1) stay.
		if extra := len(smaller) + 1 - max(keep, 1); extra > 0 {
			drop = append(drop, smaller[:extra]...)
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("drop log checkpoint of size %d: %w", u64(k), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.opts.Path, err)
	}
	return larger, nil
}

// LogKey is the log verifier key pinned on first use ("" none).
func (s *Spool) LogKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.logKey
}

// PinLogKey pins the log's verifier key (trust on first use).
func (s *Spool) PinLogKey(ctx context.Context, key string) error {
	return s.setMeta(ctx, "pin the log key", func(st *state) { st.logKey = key })
}

// LogConflict is why delivery is held on the log ("" when it is not).
func (s *Spool) LogConflict() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.logConflict
}

// SetLogConflict holds delivery: the authority's log contradicted what
// this spool kept. The first reason stays until AcceptLog.
func (s *Spool) SetLogConflict(ctx context.Context, reason string) error {
	return s.setMeta(ctx, "hold delivery on the log", func(st *state) {
		if st.logConflict == "" {
			st.logConflict = reason
		}
	})
}

// AcceptLog is the operator's word, after investigating a log conflict,
// that the authority's current log is to be trusted from now on: the
// conflict is cleared and the kept checkpoints and pinned key are
// forgotten, so the next answer's checkpoint is taken as the new start.
// It returns the conflict it cleared.
func (s *Spool) AcceptLog(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.st.logConflict
	err := s.update(ctx, func(tx *bolt.Tx, st *state) error {
		if err := tx.DeleteBucket(bucketLog); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketLog); err != nil {
			return err
		}
		st.logConflict, st.logKey = "", ""
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("accept the authority's log in spool %s: %w", s.opts.Path, err)
	}
	return was, nil
}

func (s *Spool) setMeta(ctx context.Context, what string, fn func(st *state)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.update(ctx, func(_ *bolt.Tx, st *state) error {
		fn(st)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s in spool %s: %w", what, s.opts.Path, err)
	}
	return nil
}

// DropCheckpoints deletes the kept checkpoints of the given sizes: those a
// restored authority's regrown tree does not extend (the history it lost,
// which other nodes' batches may have overtaken in size since).
func (s *Spool) DropCheckpoints(ctx context.Context, sizes []uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.update(ctx, func(tx *bolt.Tx, _ *state) error {
		b := tx.Bucket(bucketLog)
		for _, size := range sizes {
			if err := b.Delete(be(size)); err != nil {
				return fmt.Errorf("drop log checkpoint of size %d: %w", size, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool %s: %w", s.opts.Path, err)
	}
	return nil
}
