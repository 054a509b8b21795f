package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

// Format is the proof file's format line (docs/protocol.md, "Proof files").
const Format = "gpumeter-proofs/v1"

// File is a statement or a claim with the proofs that its lines are in
// the log: for each line its batch's leaf and its voucher movements'
// leaves, each with an inclusion proof against Checkpoint.
type File struct {
	Format    string             `json:"format"`
	Statement *billing.Statement `json:"statement,omitempty"`
	Claim     *billing.Claim     `json:"claim,omitempty"`
	// Checkpoint is the signed note every proof is against.
	Checkpoint string      `json:"checkpoint"`
	Lines      []LineProof `json:"lines"`
	// Consistency proves that Checkpoint's tree extends older ones (export
	// --consistency-from), so that checkpoints held elsewhere can be
	// checked against it offline.
	Consistency []ConsistencyProof `json:"consistency,omitempty"`
}

// LineProof is the proof of one line.
type LineProof struct {
	RecordID string `json:"record_id"`
	// Node, FirstSeq and LastSeq name the batch that holds the record:
	// its leaf is tlog.BatchLeaf over the envelope the node sent.
	Node     string      `json:"node"`
	FirstSeq uint64      `json:"first_seq"`
	LastSeq  uint64      `json:"last_seq"`
	Batch    LeafProof   `json:"batch"`
	Vouchers []LeafProof `json:"vouchers"`
}

// LeafProof is one leaf and its inclusion proof.
type LeafProof struct {
	Index     uint64   `json:"leaf_index"`
	Data      string   `json:"leaf_data"`
	Inclusion [][]byte `json:"inclusion"`
}

// ConsistencyProof proves that the tree of the file's checkpoint extends
// the tree of size From.
type ConsistencyProof struct {
	From   uint64   `json:"from_size"`
	Hashes [][]byte `json:"hashes"`
}

// Export adds to f (its Statement or Claim set) the proofs of every line
// against the newest checkpoint the log signed, and consistency proofs
// from each size of consistencyFrom.
func Export(ctx context.Context, st *store.Store, f *File, consistencyFrom []uint64) error {
	f.Format = Format
	lines := f.lines()
	size, _, err := st.LogSize(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	note, err := st.LogCheckpointAt(ctx, size)
	if errors.Is(err, sql.ErrNoRows) {
		// The tree grew through the CLI, which holds no key: the newest
		// kept checkpoint is older.
		notes, lerr := st.LogCheckpoints(ctx, 0, 0)
		if lerr != nil || len(notes) == 0 {
			return fmt.Errorf("export: no checkpoint signed yet (%v)", lerr)
		}
		note, err = notes[len(notes)-1], nil
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f.Checkpoint = string(note)
	if size, err = noteSize(note); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	ids := make([]string, len(lines))
	for i, l := range lines {
		ids[i] = l.RecordID
	}
	where, err := st.RecordLeaves(ctx, ids)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f.Lines = make([]LineProof, 0, len(lines))
	for _, l := range lines {
		rl, ok := where[l.RecordID]
		if !ok {
			return fmt.Errorf("export: record %s: its batch has no log leaf (stored before the log started)", l.RecordID)
		}
		lp := LineProof{RecordID: l.RecordID, Node: rl.Node, FirstSeq: rl.FirstSeq, LastSeq: rl.LastSeq, Vouchers: []LeafProof{}}
		leaves, err := st.LogLeaves(ctx, rl.LeafIndex, 1)
		if err != nil || len(leaves) != 1 {
			return fmt.Errorf("export: record %s: leaf %d: %v", l.RecordID, rl.LeafIndex, err)
		}
		moves, err := st.VoucherLeavesOf(ctx, l.RecordID)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		for i, lf := range append(leaves, moves...) {
			if lf.Index >= size {
				return fmt.Errorf("export: record %s: leaf %d is newer than the newest checkpoint (size %d): export again once serve has signed one",
					l.RecordID, lf.Index, size)
			}
			incl, err := st.InclusionProof(ctx, lf.Index, size)
			if err != nil {
				return fmt.Errorf("export: record %s: %w", l.RecordID, err)
			}
			p := LeafProof{Index: lf.Index, Data: string(lf.Data), Inclusion: incl}
			if i == 0 {
				lp.Batch = p
			} else {
				lp.Vouchers = append(lp.Vouchers, p)
			}
		}
		f.Lines = append(f.Lines, lp)
	}
	for _, from := range consistencyFrom {
		if from > size {
			return fmt.Errorf("export: --consistency-from %d: beyond the checkpoint's size %d", from, size)
		}
		hs, err := st.ConsistencyProof(ctx, from, size)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		f.Consistency = append(f.Consistency, ConsistencyProof{From: from, Hashes: hs})
	}
	return nil
}

// lines are the statement's or the claim's lines.
func (f *File) lines() []billing.Line {
	switch {
	case f.Statement != nil:
		return f.Statement.Lines
	case f.Claim != nil:
		return f.Claim.Lines
	}
	return nil
}

// noteSize reads a checkpoint note's size (its second line) without
// verifying it; Verify does that.
func noteSize(note []byte) (uint64, error) {
	lines := strings.SplitN(string(note), "\n", 3)
	if len(lines) < 3 {
		return 0, fmt.Errorf("checkpoint %q: not a checkpoint note", note)
	}
	return strconv.ParseUint(lines[1], 10, 64)
}
