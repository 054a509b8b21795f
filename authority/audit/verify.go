package audit

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
)

// Other is a checkpoint collected elsewhere (an agent's spool, a
// witness), named by where it came from.
type Other struct {
	Name string
	Note []byte
}

// Verify checks a proof file with nothing but the log's verifier: the
// checkpoint's signature, every inclusion proof, that every line's
// amounts are what its leaves say, and that every other checkpoint is
// consistent with the file's (two of one size with different roots: a
// split view). It returns every failure, each naming what failed; none:
// the file holds.
func Verify(f *File, v *tlog.Verifier, others []Other) []string {
	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	if f.Format != Format {
		fail("format %q: want %q", f.Format, Format)
	}
	cp, err := v.Open([]byte(f.Checkpoint))
	if err != nil {
		fail("checkpoint: %v", err)
		return fails
	}
	lines := f.lines()
	if f.Statement == nil && f.Claim == nil {
		fail("the file holds neither a statement nor a claim")
	}
	proofs := map[string]*LineProof{}
	for i := range f.Lines {
		proofs[f.Lines[i].RecordID] = &f.Lines[i]
	}
	for _, l := range lines {
		p, ok := proofs[l.RecordID]
		if !ok {
			fail("line %s: no proof", l.RecordID)
			continue
		}
		delete(proofs, l.RecordID)
		for _, msg := range verifyLine(cp, l, p) {
			fail("line %s: %s", l.RecordID, msg)
		}
	}
	for id := range proofs {
		fail("proof of record %s: no such line", id)
	}
	fails = append(fails, verifyOthers(cp, f.Consistency, v, others)...)
	return fails
}

// verifyLine checks one line against its leaves.
func verifyLine(cp tlog.Checkpoint, l billing.Line, p *LineProof) []string {
	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	if err := tlog.VerifyInclusion(cp, p.Batch.Index, []byte(p.Batch.Data), p.Batch.Inclusion); err != nil {
		fail("batch leaf: %v", err)
	}
	if want := batchLeafPrefix(p.Node, p.FirstSeq, p.LastSeq); !strings.HasPrefix(p.Batch.Data, want) || p.Node != l.Node {
		fail("batch leaf %d: %q is not the leaf of batch %d-%d of node %s", p.Batch.Index, p.Batch.Data, p.FirstSeq, p.LastSeq, l.Node)
	}
	paid := map[string]billing.Fen{}
	var review string
	for _, vp := range p.Vouchers {
		if err := tlog.VerifyInclusion(cp, vp.Index, []byte(vp.Data), vp.Inclusion); err != nil {
			fail("voucher leaf: %v", err)
			continue
		}
		m, err := store.ParseVoucherLeaf([]byte(vp.Data))
		if err != nil {
			fail("leaf %d: %v", vp.Index, err)
			continue
		}
		if m.Record != l.RecordID || m.Entity != l.Entity {
			fail("leaf %d: a movement of record %s for entity %s, not this line's", vp.Index, m.Record, m.Entity)
			continue
		}
		switch m.Movement {
		case store.MoveCharge, store.MoveHold:
			paid[m.Voucher] += billing.Fen(m.AmountFen)
			if m.Movement == store.MoveHold && review == "" {
				review = billing.ReviewHeld
			}
		case store.MoveRelease:
			review = billing.ReviewApproved
		case store.MoveReturn:
			review = billing.ReviewRejected
			paid[m.Voucher] -= billing.Fen(m.AmountFen)
		default:
			fail("leaf %d: movement %q is not a line's", vp.Index, m.Movement)
		}
	}
	if review != l.Review {
		fail("review %q, but the leaves say %q", l.Review, review)
	}
	var sum billing.Fen
	granted := map[string]billing.Fen{}
	for _, g := range l.Grants {
		granted[g.Voucher] += g.Amount
		sum += g.Amount
	}
	for id, amt := range paid {
		if amt != 0 && granted[id] != amt {
			fail("voucher %s paid %d fen, but the leaves say %d fen", id, granted[id], amt)
		}
		delete(granted, id)
	}
	for id, amt := range granted {
		fail("voucher %s paid %d fen, but no leaf says so", id, amt)
	}
	if l.Subsidy+l.Held != sum {
		fail("subsidy %d fen + held %d fen, but the grants sum to %d fen", l.Subsidy, l.Held, sum)
	}
	return fails
}

// batchLeafPrefix is a batch leaf's lines before the envelope's hash.
func batchLeafPrefix(node string, first, last uint64) string {
	full := string(tlog.BatchLeaf(node, first, last, nil))
	return full[:strings.LastIndex(strings.TrimSuffix(full, "\n"), "\n")+1]
}

// verifyOthers checks checkpoints held elsewhere against the file's.
func verifyOthers(cp tlog.Checkpoint, proofs []ConsistencyProof, v *tlog.Verifier, others []Other) []string {
	var fails []string
	bySize := map[uint64]struct {
		name string
		root []byte
	}{cp.Size: {"the file's checkpoint", cp.Root}}
	for _, o := range others {
		oc, err := v.Open(o.Note)
		if err != nil {
			fails = append(fails, fmt.Sprintf("checkpoint %s: %v", o.Name, err))
			continue
		}
		if seen, ok := bySize[oc.Size]; ok {
			if !bytes.Equal(seen.root, oc.Root) {
				fails = append(fails, fmt.Sprintf("split view: checkpoint %s and %s are both of size %d, with roots %s and %s: %v",
					o.Name, seen.name, oc.Size, hex.EncodeToString(oc.Root), hex.EncodeToString(seen.root), tlog.ErrInconsistent))
			}
			continue
		}
		bySize[oc.Size] = struct {
			name string
			root []byte
		}{o.Name, oc.Root}
		if oc.Size > cp.Size {
			fails = append(fails, fmt.Sprintf("checkpoint %s: size %d is newer than the file's %d: check it against a newer export", o.Name, oc.Size, cp.Size))
			continue
		}
		var hs [][]byte
		found := false
		for _, p := range proofs {
			if p.From == oc.Size {
				hs, found = p.Hashes, true
			}
		}
		if !found && oc.Size > 0 {
			fails = append(fails, fmt.Sprintf("checkpoint %s: no consistency proof from size %d in the file (export --consistency-from %d)", o.Name, oc.Size, oc.Size))
			continue
		}
		if err := tlog.VerifyConsistency(oc, cp, hs); err != nil {
			fails = append(fails, fmt.Sprintf("checkpoint %s: %v", o.Name, err))
		}
	}
	return fails
}

// IsSplitView says whether a failure Verify returned is a split view.
func IsSplitView(failure string) bool { return strings.HasPrefix(failure, "split view") }
