package spool

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gpumeter/gpumeter/internal/fsutil"
	"github.com/gpumeter/gpumeter/protocol"
)

// ErrDamaged: the spool file fails bbolt's consistency check (or bbolt
// panicked reading it). Open quarantines such a file unless
// Options.NoRepair is set, when it returns this error instead.
var ErrDamaged = errors.New("spool file is damaged")

// openVerified opens the file, runs bbolt's consistency check and loads
// the state. A damaged file is renamed aside (quarantineFile) and a new
// spool is started in the needs-anchor state: its chain continues from the
// authority's head once Anchor is called. Lock, permission and format
// errors are returned as they are: they are not damage.
func (s *Spool) openVerified() error {
	path := s.opts.Path
	_, statErr := os.Stat(path)
	existed := statErr == nil
	db, err := checkedOpen(path)
	if err == nil {
		s.db = db
		if err = s.initSafe(); err == nil {
			return nil
		}
		_ = db.Close()
		s.db = nil
	}
	if !existed || !errors.Is(err, ErrDamaged) {
		return fmt.Errorf("open spool %s: %w", path, err)
	}
	if s.opts.NoRepair {
		return fmt.Errorf("open spool %s: %w", path, err)
	}
	moved, qerr := quarantineFile(path, s.opts.Now())
	if qerr != nil {
		return fmt.Errorf("open spool %s: %w; and it cannot be moved aside: %v", path, err, qerr)
	}
	s.quarantinedFile, s.quarantinedCause = moved, err
	if s.db, err = openDB(path); err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := s.init(tx); err != nil {
			return err
		}
		s.st.needsAnchor = true
		return putState(tx, &s.st)
	})
	if err != nil {
		_ = s.db.Close()
		s.db = nil
		return fmt.Errorf("open new spool %s: %w", path, err)
	}
	return nil
}

// QuarantinedFile reports whether Open moved a damaged file aside: its new
// name and what was wrong with it ("" and nil when not). The caller logs
// it: the spool does not log.
func (s *Spool) QuarantinedFile() (string, error) { return s.quarantinedFile, s.quarantinedCause }

// checkedOpen opens the bbolt file and runs tx.Check over it; bbolt's
// panics on a damaged file (it trusts its pages) become ErrDamaged.
func checkedOpen(path string) (db *bolt.DB, err error) {
	// A page past the end of a truncated file is a SIGBUS when bbolt reads
	// its mapping (its freelist, in Open): a panic in this goroutine, then,
	// rather than the end of the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var file *os.File
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				_ = db.Close()
			} else if file != nil {
				// bbolt panicked inside Open, after taking the lock and
				// mapping the file: the mapping keeps the open file (and
				// so the lock) alive after Close, so unlock explicitly.
				// The mapping itself stays until the process ends.
				_ = syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("%w: bbolt panicked reading it: %v", ErrDamaged, p)
		}
	}()
	db, err = openDBFile(path, func(f *os.File) { file = f })
	if err != nil {
		if errors.Is(err, ErrLocked) || isAccessError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	var problems []string
	err = db.View(func(tx *bolt.Tx) error {
		// A truncated file: the meta page says the data reaches further
		// than the file does. Checked before tx.Check, whose goroutine a
		// SIGBUS would end the process in.
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			problems = append(problems, fmt.Sprintf("file has %d bytes, its meta page says %d (truncated)", fi.Size(), tx.Size()))
			return nil
		}
		for cerr := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, cerr.Error())
			}
		}
		return nil
	})
	if err == nil && len(problems) > 0 {
		err = fmt.Errorf("%w: consistency check: %s", ErrDamaged, strings.Join(problems, "; "))
	}
	if err != nil {
		_ = db.Close()
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return nil, err
	}
	return db, nil
}

// isAccessError: the file could not be opened at all (permissions, a
// directory in the way): the operator's to fix, nothing to quarantine.
func isAccessError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && (errors.Is(err, fs.ErrPermission) || pe.Op == "open")
}

// initSafe is init in a write transaction, with bbolt's panics (a damaged
// page reached through a bucket) turned into ErrDamaged. A meta bucket
// that is present but has lost its counters is damage too.
func (s *Spool) initSafe() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: bbolt panicked reading it: %v", ErrDamaged, p)
		}
	}()
	err = s.db.Update(func(tx *bolt.Tx) error { return s.init(tx) })
	if err != nil && !errors.Is(err, ErrFormat) {
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	if err == nil && s.st.nextSeq == 0 {
		return fmt.Errorf("%w: meta bucket has no next_seq", ErrDamaged)
	}
	return err
}

// quarantineFile renames a damaged spool to <path>.corrupt-<UTC time>,
// kept as evidence, and syncs the directory.
func quarantineFile(path string, now time.Time) (string, error) {
	dst := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s.corrupt-%s-%d", path, now.UTC().Format("20060102T150405Z"), i)
	}
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return dst, fmt.Errorf("sync directory after moving %s aside: %w", path, err)
	}
	return dst, nil
}

// quarantineValue is one entry of the quarantine bucket.
type quarantineValue struct {
	What   string    `json:"what"` // "pending" or "batch"
	Key    uint64    `json:"key"`  // pending entry number or batch first_seq
	Value  []byte    `json:"value"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Quarantined is one quarantined entry as listed.
type Quarantined struct {
	What   string
	Key    uint64
	Bytes  int
	Reason string
	At     time.Time
}

// quarantine moves the value at k of bucket from (pending or batches) into
// the quarantine bucket. The caller adjusts the counters of from.
func (s *Spool) quarantine(tx *bolt.Tx, st *state, from []byte, what string, k, v []byte, reason string) error {
	qv, err := json.Marshal(quarantineValue{What: what, Key: u64(k), Value: v, Reason: reason, At: s.opts.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode quarantined %s %d: %w", what, u64(k), err)
	}
	q := tx.Bucket(bucketQuarantine)
	seq, err := q.NextSequence()
	if err != nil {
		return fmt.Errorf("quarantine %s %d: %w", what, u64(k), err)
	}
	if err := q.Put(be(seq), qv); err != nil {
		return fmt.Errorf("quarantine %s %d: %w", what, u64(k), err)
	}
	if err := tx.Bucket(from).Delete(k); err != nil {
		return fmt.Errorf("quarantine %s %d: delete: %w", what, u64(k), err)
	}
	st.quarantined++
	return nil
}

// QuarantinedEntries lists the quarantine bucket.
func (s *Spool) QuarantinedEntries(ctx context.Context) ([]Quarantined, error) {
	return listBucket(ctx, s, bucketQuarantine, "quarantined entries", func(k, v []byte) (Quarantined, error) {
		var q quarantineValue
		if err := json.Unmarshal(v, &q); err != nil {
			return Quarantined{What: "unreadable", Key: u64(k), Bytes: len(v), Reason: err.Error()}, nil
		}
		return Quarantined{What: q.What, Key: q.Key, Bytes: len(q.Value), Reason: q.Reason, At: q.At}, nil
	})
}

// batchPayload returns the payload bytes of a stored envelope, without
// checking the signature (the spool holds no keys): its hash must be the
// stored hash.
func batchPayload(envelope []byte) ([]byte, error) {
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	p, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("envelope payload: %w", err)
	}
	return p, nil
}

// checkBatchBytes reports why a stored batch no longer matches itself: the
// payload's hash is not the stored hash, or its sequence range is not the
// stored one. nil when intact.
func checkBatchBytes(b Batch) error {
	p, err := batchPayload(b.Envelope)
	if err != nil {
		return err
	}
	if h := protocol.Hash(p); h != b.Hash {
		return fmt.Errorf("payload hash %s, stored hash %s", h, b.Hash)
	}
	var pb struct {
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	}
	if err := json.Unmarshal(p, &pb); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	if pb.FirstSeq != b.FirstSeq || pb.LastSeq != b.LastSeq {
		return fmt.Errorf("payload seqs %d..%d, stored %d..%d", pb.FirstSeq, pb.LastSeq, b.FirstSeq, b.LastSeq)
	}
	return nil
}

// batchRecords decodes a stored batch's records (for re-sealing).
func batchRecords(envelope []byte) ([]protocol.Record, error) {
	p, err := batchPayload(envelope)
	if err != nil {
		return nil, err
	}
	var b protocol.Batch
	if err := json.Unmarshal(p, &b); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return b.Records, nil
}

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	PendingEntries, Batches, DeadLetters int
	Retained                             int // retained acknowledged batches
	Problems                             []string
}

// Verify checks everything without changing anything: bbolt's consistency
// check, that every pending entry decodes into valid records, and that
// every unacknowledged and dead-lettered batch still hashes to its stored
// hash (gpumeter spool verify).
func (s *Spool) Verify(ctx context.Context) (VerifyReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep VerifyReport
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			rep.Problems = append(rep.Problems, "bbolt: "+cerr.Error())
		}
		// Each bucket: its count in the report, what a problem is named
		// after ("": the error says it), and the check of one entry.
		buckets := []struct {
			name  []byte
			count *int
			what  string
			check func(k, v []byte) error
		}{
			{bucketPending, &rep.PendingEntries, "", func(k, v []byte) error {
				_, err := decodeEntry(k, v)
				return err
			}},
			{bucketBatches, &rep.Batches, "batch", func(k, v []byte) error {
				b, err := decodeBatch(k, v)
				if err != nil {
					return err
				}
				return checkBatchBytes(b)
			}},
			{bucketAcked, &rep.Retained, "retained batch", func(k, v []byte) error {
				b, err := decodeRetained(k, v)
				if err != nil {
					return err
				}
				return checkBatchBytes(b.Batch)
			}},
			{bucketDeadLetter, &rep.DeadLetters, "dead letter", func(k, v []byte) error {
				var d deadValue
				if err := json.Unmarshal(v, &d); err != nil {
					return err
				}
				return checkBatchBytes(Batch{FirstSeq: u64(k), LastSeq: d.LastSeq, Hash: d.Hash, Envelope: d.Envelope})
			}},
		}
		for _, b := range buckets {
			err := tx.Bucket(b.name).ForEach(func(k, v []byte) error {
				*b.count++
				switch err := b.check(k, v); {
				case err == nil:
				case b.what == "":
					rep.Problems = append(rep.Problems, err.Error())
				default:
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s %d: %v", b.what, u64(k), err))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("verify spool %s: %w", s.opts.Path, err)
	}
	return rep, nil
}
