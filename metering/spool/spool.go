package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket and meta key names: the file format (formatVersion).
var (
	bucketMeta       = []byte("meta")
	bucketPending    = []byte("pending")
	bucketBatches    = []byte("batches")
	bucketDeadLetter = []byte("deadletter")
	bucketQuarantine = []byte("quarantine")
	bucketAcked      = []byte("acked")
	bucketLog        = []byte("logcheckpoints")

	keyVersion        = []byte("version")
	keyNextSeq        = []byte("next_seq")
	keyLastHash       = []byte("last_hash")
	keyAcked          = []byte("acked")
	keyCheckpoint     = []byte("checkpoint")
	keyPendingKey     = []byte("pending_key")
	keyPendingRecords = []byte("pending_records")
	keyPendingBytes   = []byte("pending_bytes")
	keyBatchCount     = []byte("batch_count")
	keyBatchBytes     = []byte("batch_bytes")
	keyDeadLetters    = []byte("dead_letters")
	keyQuarantined    = []byte("quarantined")
	keyNeedsAnchor    = []byte("needs_anchor")
	keyLostFrom       = []byte("lost_from")
	keyAckedCount     = []byte("acked_count")
	keyAckedBytes     = []byte("acked_bytes")
	keyLogKey         = []byte("log_key")
	keyLogConflict    = []byte("log_conflict")
)

const formatVersion = 1

// lockTimeout bounds the wait for another process's lock on the file.
const lockTimeout = time.Second

// Errors callers act on.
var (
	// ErrFull: storing the records would exceed Options.MaxBytes even after
	// merging every pending record that can be merged. Nothing was stored.
	ErrFull = errors.New("spool full")
	// ErrAckAhead: an acknowledgement beyond the highest sealed sequence.
	ErrAckAhead = errors.New("acknowledged sequence is beyond the highest sealed one")
	// ErrNotFound: no unacknowledged batch starts at that sequence.
	ErrNotFound = errors.New("no such batch")
	// ErrLocked: another process (another agent) holds the spool file.
	ErrLocked = errors.New("spool file is locked by another process (is another gpumeter agent running?)")
	// ErrClosed: the spool was closed.
	ErrClosed = errors.New("spool closed")
	// ErrNeedsAnchor: the spool replaced a damaged one (or quarantined a
	// sealed batch) and seals nothing until Anchor places its chain on the
	// authority's head.
	ErrNeedsAnchor = errors.New("spool needs anchoring on the authority's head before it seals")
	// ErrFormat: the file was written in a format version this agent does
	// not read (a newer agent's file); it is not damage and is left alone.
	ErrFormat = errors.New("unknown spool file format")
)

// Options configure a Spool.
type Options struct {
	Path string
	// MaxBytes caps the stored bytes of pending records and unacknowledged
	// batches (0: unlimited).
	MaxBytes int64
	// MergeWindow is the width of the aligned buckets records are merged
	// into when over MaxBytes (default 1h).
	MergeWindow time.Duration
	// Now stamps dead letters, quarantined entries and the name of a
	// quarantined file (default time.Now).
	Now func() time.Time
	// Window is the metering window: the spool_lost gap Anchor records is
	// cut on its aligned boundaries, one record per unit and window as the
	// meter does for agent_down (0: one record per unit for the whole gap).
	Window time.Duration
	// RetainAcked is how long an acknowledged batch is kept, byte for
	// byte, after its ack (retain.go): what a restored authority that lost
	// it is sent again. 0: deleted at ack.
	RetainAcked time.Duration
	// NoRepair: Open returns ErrDamaged for a damaged file instead of
	// quarantining it (gpumeter spool verify).
	NoRepair bool
}

// Stats are the spool's gauges for metrics.
type Stats struct {
	PendingRecords int64
	PendingBytes   int64
	UnackedBatches int64
	UnackedBytes   int64
	DeadLetters    int64
	// AckedBatches and AckedBytes are the acknowledged batches retained
	// (Options.RetainAcked); they count against MaxBytes and are the first
	// to go when over it.
	AckedBatches int64
	AckedBytes   int64
	// Quarantined counts entries moved to the quarantine bucket (an
	// undecodable pending entry, a batch whose bytes no longer match its
	// hash) since the file was created.
	Quarantined int64
	// NeedsAnchor: nothing is sealed until Anchor (see ErrNeedsAnchor).
	NeedsAnchor bool
	FileBytes   int64
	// MaxBytes is Options.MaxBytes: the cap on PendingBytes+UnackedBytes+
	// AckedBytes past which retained acknowledged batches are dropped and
	// then old pending records merged (0: no cap).
	MaxBytes int64
}

// state mirrors the meta bucket; it changes only together with a committed
// transaction (see update).
type state struct {
	nextSeq        uint64 // seq of the next sealed record; sealed head = nextSeq-1
	lastHash       string // hash of the batch ending at nextSeq-1
	acked          uint64
	pendingKey     uint64 // key of the next pending entry
	pendingRecords uint64
	pendingBytes   uint64
	batchCount     uint64
	batchBytes     uint64
	deadLetters    uint64
	quarantined    uint64
	needsAnchor    bool
	lostFrom       int64 // unix ms where the spool_lost gap starts; valid if hasLostFrom
	hasLostFrom    bool
	ackedCount     uint64 // retained acknowledged batches (retain.go)
	ackedBytes     uint64
	logKey         string // the log's verifier key pinned on first use ("" none)
	logConflict    string // why delivery is held on the log ("" not held)
}

func (st *state) storedBytes() int64 { return int64(st.pendingBytes + st.batchBytes + st.ackedBytes) }

// Spool is the agent's durable store of usage between the meter and the
// authority. Its methods are safe for concurrent use; they serialize.
type Spool struct {
	opts Options

	mu sync.Mutex
	db *bolt.DB // nil once closed
	st state

	// Set by Open when it quarantined a damaged file (see integrity.go).
	quarantinedFile  string
	quarantinedCause error
}

// Open opens (creating if needed) the spool at opts.Path. It waits at most
// a second for another process's lock and then fails with ErrLocked. A file
// much larger than its live data is compacted first.
func Open(opts Options) (*Spool, error) {
	if opts.Path == "" {
		return nil, errors.New("open spool: empty path")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("open spool %s: negative MaxBytes %d", opts.Path, opts.MaxBytes)
	}
	if opts.MergeWindow == 0 {
		opts.MergeWindow = time.Hour
	}
	if opts.MergeWindow < time.Millisecond {
		return nil, fmt.Errorf("open spool %s: MergeWindow %s below 1ms", opts.Path, opts.MergeWindow)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Spool{opts: opts}
	if err := s.openVerified(); err != nil {
		return nil, err
	}
	if s.bloated() {
		if err := s.Compact(context.Background()); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("open spool %s: %w", opts.Path, err)
		}
	}
	return s, nil
}

func openDB(path string) (*bolt.DB, error) { return openDBFile(path, nil) }

// openDBFile is openDB; opened, when not nil, is told the file bbolt opens
// (so that a panic inside bbolt does not leak the file and its lock).
func openDBFile(path string, opened func(*os.File)) (*bolt.DB, error) {
	// NoSync false (the default, stated for the reader): every commit is
	// fsynced before Update returns; that is the spool's whole promise.
	o := &bolt.Options{Timeout: lockTimeout, NoSync: false}
	if opened != nil {
		o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if err == nil {
				opened(f)
			}
			return f, err
		}
	}
	db, err := bolt.Open(path, 0o600, o)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open spool %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	return db, nil
}

// init creates the buckets of a new file and loads the state.
func (s *Spool) init(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketPending, bucketBatches, bucketDeadLetter, bucketQuarantine, bucketAcked, bucketLog} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keyVersion)
	if v == nil {
		s.st = state{nextSeq: 1}
		return putState(tx, &s.st)
	}
	if got := u64(v); got != formatVersion {
		return fmt.Errorf("%w: version %d, this agent reads %d", ErrFormat, got, formatVersion)
	}
	s.st = loadState(meta)
	return nil
}

func loadState(meta *bolt.Bucket) state {
	return state{
		nextSeq:        u64(meta.Get(keyNextSeq)),
		lastHash:       string(meta.Get(keyLastHash)),
		acked:          u64(meta.Get(keyAcked)),
		pendingKey:     u64(meta.Get(keyPendingKey)),
		pendingRecords: u64(meta.Get(keyPendingRecords)),
		pendingBytes:   u64(meta.Get(keyPendingBytes)),
		batchCount:     u64(meta.Get(keyBatchCount)),
		batchBytes:     u64(meta.Get(keyBatchBytes)),
		deadLetters:    u64(meta.Get(keyDeadLetters)),
		quarantined:    u64(meta.Get(keyQuarantined)),
		needsAnchor:    u64(meta.Get(keyNeedsAnchor)) == 1,
		lostFrom:       int64(u64(meta.Get(keyLostFrom))),
		hasLostFrom:    meta.Get(keyLostFrom) != nil,
		ackedCount:     u64(meta.Get(keyAckedCount)),
		ackedBytes:     u64(meta.Get(keyAckedBytes)),
		logKey:         string(meta.Get(keyLogKey)),
		logConflict:    string(meta.Get(keyLogConflict)),
	}
}

func putState(tx *bolt.Tx, st *state) error {
	meta := tx.Bucket(bucketMeta)
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyVersion, formatVersion}, {keyNextSeq, st.nextSeq}, {keyAcked, st.acked},
		{keyPendingKey, st.pendingKey}, {keyPendingRecords, st.pendingRecords},
		{keyPendingBytes, st.pendingBytes}, {keyBatchCount, st.batchCount},
		{keyBatchBytes, st.batchBytes}, {keyDeadLetters, st.deadLetters},
		{keyQuarantined, st.quarantined}, {keyNeedsAnchor, b2u(st.needsAnchor)},
		{keyAckedCount, st.ackedCount}, {keyAckedBytes, st.ackedBytes},
	} {
		if err := meta.Put(kv.k, be(kv.v)); err != nil {
			return fmt.Errorf("write meta %s: %w", kv.k, err)
		}
	}
	for _, kv := range []struct {
		k []byte
		v string
	}{{keyLastHash, st.lastHash}, {keyLogKey, st.logKey}, {keyLogConflict, st.logConflict}} {
		if err := meta.Put(kv.k, []byte(kv.v)); err != nil {
			return fmt.Errorf("write meta %s: %w", kv.k, err)
		}
	}
	var err error
	if st.hasLostFrom {
		err = meta.Put(keyLostFrom, be(uint64(st.lostFrom)))
	} else {
		err = meta.Delete(keyLostFrom)
	}
	if err != nil {
		return fmt.Errorf("write meta %s: %w", keyLostFrom, err)
	}
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// update runs fn on a copy of the state in one write transaction; the copy
// becomes the state only if the transaction commits (and so was fsynced).
// The caller holds s.mu.
func (s *Spool) update(ctx context.Context, fn func(tx *bolt.Tx, st *state) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db == nil {
		return ErrClosed
	}
	st := s.st
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx, &st); err != nil {
			return err
		}
		return putState(tx, &st)
	})
	if err != nil {
		return err
	}
	s.st = st
	return nil
}

func (s *Spool) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// listBucket reads every entry of bucket, in key order and under the lock,
// as decode makes it; an error from decode ends the list. what names the
// list in the error.
func listBucket[T any](ctx context.Context, s *Spool, bucket []byte, what string, decode func(k, v []byte) (T, error)) ([]T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []T
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			x, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, x)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s in spool %s: %w", what, s.opts.Path, err)
	}
	return out, nil
}

// Close closes the file. Everything committed is already durable.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("close spool %s: %w", s.opts.Path, err)
	}
	return nil
}

// Checkpoint returns the meter checkpoint stored by the last Append that
// had one (nil for a new spool).
func (s *Spool) Checkpoint() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	err := s.view(context.Background(), func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyCheckpoint); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoint of spool %s: %w", s.opts.Path, err)
	}
	return out, nil
}

// Head returns the acknowledged mark, the highest sealed sequence and the
// hash of the batch ending there ("" before the first).
func (s *Spool) Head() (acked, sealed uint64, lastHash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.acked, s.st.nextSeq - 1, s.st.lastHash
}

// Stats returns the spool's gauges; FileBytes is 0 if the file cannot be
// statted.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	out := Stats{
		PendingRecords: int64(st.pendingRecords),
		PendingBytes:   int64(st.pendingBytes),
		UnackedBatches: int64(st.batchCount),
		UnackedBytes:   int64(st.batchBytes),
		DeadLetters:    int64(st.deadLetters),
		AckedBatches:   int64(st.ackedCount),
		AckedBytes:     int64(st.ackedBytes),
		Quarantined:    int64(st.quarantined),
		NeedsAnchor:    st.needsAnchor,
		MaxBytes:       s.opts.MaxBytes,
	}
	if fi, err := os.Stat(s.opts.Path); err == nil {
		out.FileBytes = fi.Size()
	}
	return out
}

func be(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// u64 decodes be; a missing or short value is 0.
func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
