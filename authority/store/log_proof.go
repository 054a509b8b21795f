package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"

	"github.com/gpumeter/gpumeter/internal/tlog"
)

// The log's reads: what the proof endpoints, receipts, statement export
// and an offline audit use. All read committed state only.

// LogLeaf is one leaf of the log.
type LogLeaf struct {
	Index uint64
	Kind  string // tlog.KindBatch or tlog.KindVoucher
	Data  []byte // what is hashed (tlog.LeafHash)
	Hash  []byte
}

// LogSize is the tree's size and root now; ErrLogNotStarted when the
// database keeps no log.
func (s *Store) LogSize(ctx context.Context) (uint64, []byte, error) {
	st, err := s.readState(ctx, s.r, false)
	if err != nil {
		return 0, nil, err
	}
	if st == nil {
		return 0, nil, ErrLogNotStarted
	}
	root, err := st.root()
	return st.size, root, err
}

// LogCheckpoint is the signed checkpoint of the tree now: the one kept
// for its size, or one signed with sg and kept (every checkpoint ever
// served stays in log_checkpoints).
func (s *Store) LogCheckpoint(ctx context.Context, sg *tlog.Signer) (size uint64, note []byte, err error) {
	st, err := s.readState(ctx, s.r, false)
	if err != nil {
		return 0, nil, err
	}
	if st == nil {
		return 0, nil, ErrLogNotStarted
	}
	if note, err = s.LogCheckpointAt(ctx, st.size); err == nil || !errors.Is(err, sql.ErrNoRows) {
		return st.size, note, err
	}
	if sg.VerifierKey() != st.vkey {
		return 0, nil, fmt.Errorf("%w: the database's log verifies with %q, this key is %q", ErrLogKey, st.vkey, sg.VerifierKey())
	}
	if err := s.writeTx(ctx, func(tx *sql.Tx) error { return s.saveCheckpoint(tx, sg, st) }); err != nil {
		return 0, nil, err
	}
	note, err = s.LogCheckpointAt(ctx, st.size)
	return st.size, note, err
}

// LogCheckpointAt is the checkpoint kept for size; an error wrapping
// sql.ErrNoRows when none was signed for it.
func (s *Store) LogCheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	var note []byte
	if err := s.queryRow(ctx, `SELECT note FROM log_checkpoints WHERE size = ?`, size).Scan(&note); err != nil {
		return nil, fmt.Errorf("read checkpoint %d: %w", size, err)
	}
	return note, nil
}

// LogCheckpoints lists every checkpoint kept, by size, from size from on
// (at most limit; 0: all).
func (s *Store) LogCheckpoints(ctx context.Context, from uint64, limit int) ([][]byte, error) {
	q := `SELECT note FROM log_checkpoints WHERE size >= ? ORDER BY size`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.query(ctx, q, from)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var n []byte
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list checkpoints: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// LogLeaves lists the leaves [from, from+limit) (fewer at the tree's end).
func (s *Store) LogLeaves(ctx context.Context, from uint64, limit int) ([]LogLeaf, error) {
	rows, err := s.query(ctx, `SELECT idx, kind, data, hash FROM log_leaves WHERE idx >= ? AND idx < ? ORDER BY idx`, from, from+uint64(limit))
	if err != nil {
		return nil, fmt.Errorf("list log leaves: %w", err)
	}
	defer rows.Close()
	var out []LogLeaf
	for rows.Next() {
		var l LogLeaf
		if err := rows.Scan(&l.Index, &l.Kind, &l.Data, &l.Hash); err != nil {
			return nil, fmt.Errorf("list log leaves: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// BatchLogIndex is the leaf of the stored batch of node at firstSeq;
// an error wrapping sql.ErrNoRows if it has none.
func (s *Store) BatchLogIndex(ctx context.Context, node string, firstSeq uint64) (uint64, error) {
	var idx uint64
	if err := s.queryRow(ctx, `SELECT leaf_idx FROM log_batches WHERE node_id = ? AND first_seq = ?`, node, firstSeq).Scan(&idx); err != nil {
		return 0, fmt.Errorf("log leaf of batch %d of node %q: %w", firstSeq, node, err)
	}
	return idx, nil
}

// InclusionProof proves leaf index in the tree of size.
func (s *Store) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if err := s.checkProofSize(ctx, size); err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("inclusion proof: %w: leaf %d is not in a tree of size %d", ErrLogRange, index, size)
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof of %d in %d: %w", index, size, err)
	}
	return s.fetchProof(ctx, n)
}

// ConsistencyProof proves that the tree of size to extends the tree of
// size from (empty when from is 0 or from == to).
func (s *Store) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	if err := s.checkProofSize(ctx, to); err != nil {
		return nil, err
	}
	if from > to {
		return nil, fmt.Errorf("consistency proof: %w: from %d is larger than to %d", ErrLogRange, from, to)
	}
	if from == 0 || from == to {
		return [][]byte{}, nil
	}
	n, err := proof.Consistency(from, to)
	if err != nil {
		return nil, fmt.Errorf("consistency proof %d to %d: %w", from, to, err)
	}
	return s.fetchProof(ctx, n)
}

// checkProofSize refuses a size beyond the tree now.
func (s *Store) checkProofSize(ctx context.Context, size uint64) error {
	cur, _, err := s.LogSize(ctx)
	if err != nil {
		return err
	}
	if size > cur {
		return fmt.Errorf("%w: size %d, the tree has %d leaves", ErrLogRange, size, cur)
	}
	return nil
}

// fetchProof reads the proof's nodes (complete subtrees in log_nodes;
// leaves' hashes in log_leaves) in one query and rehashes them into the
// proof.
func (s *Store) fetchProof(ctx context.Context, n proof.Nodes) ([][]byte, error) {
	if len(n.IDs) == 0 {
		return [][]byte{}, nil
	}
	var conds, leaves []string
	args := make([]any, 0, 2*len(n.IDs))
	for _, id := range n.IDs {
		if id.Level > 0 {
			conds = append(conds, "(level = ? AND idx = ?)")
			args = append(args, int64(id.Level), id.Index)
		}
	}
	for _, id := range n.IDs {
		if id.Level == 0 {
			leaves = append(leaves, "?")
			args = append(args, id.Index)
		}
	}
	var parts []string
	if len(conds) > 0 {
		parts = append(parts, `SELECT level, idx, hash FROM log_nodes WHERE `+strings.Join(conds, " OR "))
	}
	if len(leaves) > 0 {
		in := strings.Join(leaves, ", ")
		// A tree written before leaves were left out of log_nodes (or the
		// proof benchmark's synthetic one) has them there too.
		parts = append(parts, `SELECT 0, idx, hash FROM log_leaves WHERE idx IN (`+in+`)`,
			`SELECT level, idx, hash FROM log_nodes WHERE level = 0 AND idx IN (`+in+`)`)
		args = append(args, args[len(args)-len(leaves):]...)
	}
	rows, err := s.query(ctx, strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return nil, fmt.Errorf("read proof nodes: %w", err)
	}
	defer rows.Close()
	got := make(map[compact.NodeID][]byte, len(n.IDs))
	for rows.Next() {
		var (
			level int64
			idx   uint64
			h     []byte
		)
		if err := rows.Scan(&level, &idx, &h); err != nil {
			return nil, fmt.Errorf("read proof nodes: %w", err)
		}
		got[compact.NewNodeID(uint(level), idx)] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read proof nodes: %w", err)
	}
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		if hs[i] = got[id]; hs[i] == nil {
			return nil, fmt.Errorf("read proof nodes: node (level %d, index %d) is missing from log_nodes", id.Level, id.Index)
		}
	}
	out, err := n.Rehash(hs, tlog.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("rehash proof: %w", err)
	}
	return out, nil
}
