package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/protocol"
)

// The verifiable log's tree lives in the store: every leaf is appended in
// the transaction that writes the rows it covers, so no leaf ever stands
// without its rows and no row without its leaf. A transaction queues its
// leaves (logLeaf) as it goes; writeTx appends them (flushLog) just before
// it commits, so the log's lock (log_state, FOR UPDATE on PostgreSQL) is
// the last a transaction takes and is held for the append alone.

// ErrLogNotStarted: the database keeps no log (StartLog was never run).
var ErrLogNotStarted = errors.New("the verifiable log is not started")

// ErrLogRange: a proof was asked for a size or index beyond the tree.
var ErrLogRange = errors.New("beyond the log's tree")

// ErrLogKey: the log was started with another key.
var ErrLogKey = errors.New("the verifiable log was started with another key")

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// pendingLeaf is a leaf queued in a transaction; index is set when it is
// appended.
type pendingLeaf struct {
	kind  string
	data  []byte
	batch *protocol.Batch // a batch leaf's batch (log_batches), or nil
	index uint64
	added bool
}

// logLeaf queues a leaf in tx's transaction.
func (s *Store) logLeaf(tx *sql.Tx, kind string, data []byte, b *protocol.Batch) *pendingLeaf {
	l := &pendingLeaf{kind: kind, data: data, batch: b}
	st := s.stateOf(tx)
	st.leaves = append(st.leaves, l)
	return l
}

// logBatch queues the leaf of a batch being stored (tlog.BatchLeaf over
// the envelope exactly as verified).
func (s *Store) logBatch(tx *sql.Tx, sub *Submission) *pendingLeaf {
	b := &sub.Batch
	return s.logLeaf(tx, tlog.KindBatch, tlog.BatchLeaf(b.Node, b.FirstSeq, b.LastSeq, sub.Envelope), b)
}

// logState is the log_state row.
type logState struct {
	size uint64
	rng  *compact.Range
	vkey string
}

// root is the tree's root hash.
func (st *logState) root() ([]byte, error) {
	if st.size == 0 {
		return tlog.EmptyRoot(), nil
	}
	return st.rng.GetRootHash(nil)
}

func decodeState(size uint64, comp []byte, vkey string) (*logState, error) {
	if len(comp)%32 != 0 {
		return nil, fmt.Errorf("log_state.compact has %d bytes, not a multiple of 32", len(comp))
	}
	hs := make([][]byte, 0, len(comp)/32)
	for at := 0; at < len(comp); at += 32 {
		hs = append(hs, comp[at:at+32:at+32])
	}
	rng, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return nil, fmt.Errorf("log_state: size %d: %w", size, err)
	}
	return &logState{size: size, rng: rng, vkey: vkey}, nil
}

// rowQueryer is a pool or a transaction.
type rowQueryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const logStateQuery = `SELECT size, compact, verifier_key FROM log_state WHERE id = 1`

// readState reads log_state through q (locking it when lock is set, on
// PostgreSQL); nil, nil when the log is not started.
func (s *Store) readState(ctx context.Context, q rowQueryer, lock bool) (*logState, error) {
	sel := logStateQuery
	if lock {
		sel += s.d.forUpdate
	}
	var (
		size uint64
		comp []byte
		vkey string
	)
	err := q.QueryRowContext(ctx, s.d.rebind(sel)).Scan(&size, &comp, &vkey)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the log's state: %w", err)
	}
	return decodeState(size, comp, vkey)
}

// flushLog sends tx's queued statements (pipeline.go) and appends the
// leaves tx queued, if the log is started; writeTx calls it just before
// commit. The log's state is read (and locked) as the last statement of
// the queue's batch: no round trip of its own.
func (s *Store) flushLog(ctx context.Context, tx *sql.Tx) error {
	tst := s.stateOf(tx)
	leaves := tst.leaves
	tst.leaves = nil
	if len(leaves) == 0 {
		return s.flushQueue(ctx, tx)
	}
	var st *logState
	s.queueCheck(tx, "read the log's state", func(rows resultRows) error {
		if !rows.Next() {
			return nil // not started
		}
		var (
			size uint64
			comp []byte
			vkey string
		)
		if err := rows.Scan(&size, &comp, &vkey); err != nil {
			return fmt.Errorf("read the log's state: %w", err)
		}
		var err error
		st, err = decodeState(size, comp, vkey)
		return err
	}, logStateQuery+s.d.forUpdate)
	if err := s.flushQueue(ctx, tx); err != nil || st == nil {
		return err // st nil: not started, the log appends nothing
	}
	now := time.Now().UnixMilli()
	var lrows, nrows, brows [][]any
	// Leaves (level 0) are not repeated in log_nodes: their hashes are in
	// log_leaves, where proofs read them. That is a third of the rows the
	// log would add to each batch.
	visit := func(id compact.NodeID, h []byte) {
		if id.Level > 0 {
			nrows = append(nrows, []any{int64(id.Level), id.Index, h})
		}
	}
	for _, l := range leaves {
		h := tlog.LeafHash(l.data)
		l.index, l.added = st.rng.End(), true
		if err := st.rng.Append(h, visit); err != nil {
			return fmt.Errorf("append leaf %d: %w", l.index, err)
		}
		lrows = append(lrows, []any{l.index, l.kind, l.data, h, now})
		if l.batch != nil {
			brows = append(brows, []any{l.batch.Node, l.batch.FirstSeq, l.index})
		}
	}
	// The rows go in one batch (pipeline.go), sent here.
	s.queueRows(tx, "append to the log: leaves", "log_leaves", `idx, kind, data, hash, created`, lrows, nil)
	s.queueRows(tx, "append to the log: nodes", "log_nodes", `level, idx, hash`, nrows, nil)
	s.queueRows(tx, "append to the log: batches", "log_batches", `node_id, first_seq, leaf_idx`, brows, nil)
	st.size = st.rng.End()
	s.queue(tx, "append to the log: state", `UPDATE log_state SET size = ?, compact = ? WHERE id = 1`,
		st.size, bytes.Join(st.rng.Hashes(), nil))
	// Sign the new size now, in the same transaction, when this process
	// holds the key: a receipt then only reads. Without it (the CLI), the
	// next checkpoint read signs.
	if sg := s.logSigner.Load(); sg != nil && sg.VerifierKey() == st.vkey {
		if err := s.saveCheckpoint(tx, sg, st); err != nil {
			return err
		}
	}
	return s.flushQueue(ctx, tx)
}

// saveCheckpoint signs st's tree and queues the note's row (one per
// size; pipeline.go).
func (s *Store) saveCheckpoint(tx *sql.Tx, sg *tlog.Signer, st *logState) error {
	root, err := st.root()
	if err != nil {
		return err
	}
	note, err := sg.Sign(st.size, root)
	if err != nil {
		return fmt.Errorf("sign checkpoint %d: %w", st.size, err)
	}
	s.queue(tx, fmt.Sprintf("keep checkpoint %d", st.size),
		`INSERT INTO log_checkpoints (size, note, created) VALUES (?, ?, ?) ON CONFLICT (size) DO NOTHING`,
		st.size, note, time.Now().UnixMilli())
	return nil
}

// StartLog starts the verifiable log if the database keeps none (from
// now on, every batch stored and every voucher movement is appended, by
// this process and every other one on the database, the CLI's included)
// and makes this Store sign checkpoints with sg. A log started with
// another key is refused (ErrLogKey): every checkpoint it ever served
// must verify with one key. Starting is idempotent.
func (s *Store) StartLog(ctx context.Context, sg *tlog.Signer) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		st, err := s.readState(ctx, tx, true)
		if err != nil {
			return err
		}
		if st == nil {
			st = &logState{rng: rangeFactory.NewEmptyRange(0), vkey: sg.VerifierKey()}
			if _, err := s.exec(ctx, tx, `INSERT INTO log_state (id, size, compact, verifier_key, started) VALUES (1, 0, ?, ?, ?)`,
				[]byte{}, st.vkey, time.Now().UnixMilli()); err != nil {
				return fmt.Errorf("start the log: %w", err)
			}
		}
		if st.vkey != sg.VerifierKey() {
			return fmt.Errorf("%w: the database's log verifies with %q, the configured key is %q", ErrLogKey, st.vkey, sg.VerifierKey())
		}
		return s.saveCheckpoint(tx, sg, st)
	})
	if err != nil {
		return fmt.Errorf("start the log on %s: %w", s.id, err)
	}
	s.logSigner.Store(sg)
	return nil
}

// batchLeafIndex is where an ingested batch's leaf is: the leaf appended
// (nil if the log is not started), or for a duplicate the stored batch's.
func (s *Store) batchLeafIndex(ctx context.Context, leaf *pendingLeaf, b *protocol.Batch, duplicate bool) (*uint64, error) {
	if !duplicate {
		if leaf == nil || !leaf.added {
			return nil, nil
		}
		return &leaf.index, nil
	}
	var idx uint64
	err := s.queryRow(ctx, `SELECT leaf_idx FROM log_batches WHERE node_id = ? AND first_seq = ?`, b.Node, b.FirstSeq).Scan(&idx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil // stored before the log started
	case err != nil:
		return nil, fmt.Errorf("find the log leaf of batch %d of node %q: %w", b.FirstSeq, b.Node, err)
	}
	return &idx, nil
}
