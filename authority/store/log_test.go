package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/protocol"
)

const testOrigin = "authority.example/log"

// logSigner is a new log key's checkpoint signer.
func logSigner(t testing.TB) *tlog.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := tlog.NewSigner(testOrigin, k)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// openCheckpoint checks a note with sumdb/note and parses it with
// transparency-dev/formats: nothing of ours.
func openCheckpoint(t testing.TB, sg *tlog.Signer, signed []byte) log.Checkpoint {
	t.Helper()
	v, err := note.NewVerifier(sg.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify: %v\n%s", err, signed)
	}
	var cp log.Checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil || cp.Origin != testOrigin {
		t.Fatalf("checkpoint %q: %v (origin %q)", n.Text, err, cp.Origin)
	}
	return cp
}

// openLogged starts a new log on s and sets up billing (billSetup).
func openLogged(t *testing.T, s *Store) (*Store, *tlog.Signer) {
	t.Helper()
	sg := logSigner(t)
	must(t, s.StartLog(context.Background(), sg))
	billSetup(t, s)
	return s, sg
}

// checkTree recomputes the root from the stored leaves' data alone and
// checks every leaf's inclusion and every kept checkpoint's consistency
// with the newest, with transparency-dev/merkle's own verifiers.
func checkTree(t *testing.T, s *Store, sg *tlog.Signer) (uint64, []LogLeaf) {
	t.Helper()
	ctx := context.Background()
	size, cpNote, err := s.LogCheckpoint(ctx, sg)
	if err != nil {
		t.Fatal(err)
	}
	cp := openCheckpoint(t, sg, cpNote)
	leaves, err := s.LogLeaves(ctx, 0, int(size)+10)
	if err != nil || uint64(len(leaves)) != size || cp.Size != size {
		t.Fatalf("%d leaves, checkpoint size %d, log size %d, %v", len(leaves), cp.Size, size, err)
	}
	rng := rangeFactory.NewEmptyRange(0)
	for i, l := range leaves {
		if l.Index != uint64(i) || !bytes.Equal(l.Hash, rfc6962.DefaultHasher.HashLeaf(l.Data)) {
			t.Fatalf("leaf %d: index %d, hash does not match its data", i, l.Index)
		}
		must(t, rng.Append(rfc6962.DefaultHasher.HashLeaf(l.Data), nil))
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if size > 0 {
		root, err = rng.GetRootHash(nil)
		must(t, err)
	}
	if !bytes.Equal(root, cp.Hash) {
		t.Fatalf("checkpoint root %x, the leaves' root %x", cp.Hash, root)
	}
	for _, l := range leaves {
		p, err := s.InclusionProof(ctx, l.Index, size)
		must(t, err)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, l.Index, size, l.Hash, p, cp.Hash); err != nil {
			t.Errorf("leaf %d of %d: %v", l.Index, size, err)
		}
	}
	notes, err := s.LogCheckpoints(ctx, 0, 0)
	must(t, err)
	for _, n := range notes {
		old := openCheckpoint(t, sg, n)
		p, err := s.ConsistencyProof(ctx, old.Size, size)
		must(t, err)
		if old.Size == 0 || old.Size == size {
			continue
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, size, p, old.Hash, cp.Hash); err != nil {
			t.Errorf("checkpoint %d to %d: %v", old.Size, size, err)
		}
	}
	return size, leaves
}

// TestLogBatchesAndVoucherMovements: every stored batch and every voucher
// movement (issue, charge, hold, release, return, status) is a leaf, in
// order; proofs verify; a duplicate's receipt names the original leaf.
func TestLogBatchesAndVoucherMovements(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := context.Background()
		s, sg := openLogged(t, open(t))
		must(t, s.AddProgram(ctx, testProgram("P1", func(p *billing.Program) { p.Ratio = 5000 })))
		must(t, s.IssueVoucherAt(ctx, testVoucher("v1", "P1", "E1", 100_000, y2028), y2026))
		n := newBillNode(t, s, "n1")
		first := n.ingest(n.hour(1, bt, "acme"))
		// A held subsidy, then a second one; approve one, reject the other.
		held := func(rec protocol.Record) Submission {
			sub := n.batch(rec)
			sub.Verify = func(_ *Facts, b *protocol.Batch) ([]RecordVerdict, error) {
				vs := defaultVerdicts(b)
				for i := range vs {
					vs[i].Hold = "looks idle"
				}
				return vs, nil
			}
			res, err := s.Ingest(ctx, sub)
			if err != nil || res.LogIndex == nil {
				t.Fatalf("ingest held batch: %+v, %v", res, err)
			}
			return sub
		}
		h1 := held(n.hour(1, bt.Add(time.Hour), "acme"))
		h2 := held(n.hour(1, bt.Add(2*time.Hour), "acme"))
		_, err := s.ApproveReview(ctx, h1.Batch.Records[0].ID, "alice", "", bt)
		must(t, err)
		_, err = s.RejectReview(ctx, h2.Batch.Records[0].ID, "alice", "no work", bt)
		must(t, err)
		must(t, s.SetVoucherStatus(ctx, "v1", billing.VoucherSuspended))

		// The duplicate's receipt names the original leaf.
		res, err := s.Ingest(ctx, first)
		if err != nil || !res.Duplicate || res.LogIndex == nil || *res.LogIndex != 1 {
			t.Fatalf("duplicate: %+v, %v; want leaf 1", res, err)
		}
		size, leaves := checkTree(t, s, sg)
		var got []string
		for _, l := range leaves {
			switch l.Kind {
			case tlog.KindBatch:
				got = append(got, "batch")
			case tlog.KindVoucher:
				m, err := ParseVoucherLeaf(l.Data)
				must(t, err)
				got = append(got, fmt.Sprintf("%s %s %s %d", m.Movement, m.Voucher, m.Entity, m.AmountFen))
			}
		}
		// 1000 fen an hour at 50 %: 500 fen a record.
		want := []string{"issue v1 E1 100000", "batch", "charge v1 E1 500", "batch", "hold v1 E1 500", "batch", "hold v1 E1 500",
			"release v1 E1 500", "return v1 E1 500", "suspend v1 E1 0"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("leaves\n%q\nwant\n%q", got, want)
		}
		if size != uint64(len(want)) {
			t.Errorf("size %d", size)
		}
		// The batch leaf is the one an agent computes from its envelope.
		if !bytes.Equal(leaves[1].Data, tlog.BatchLeaf("n1", 1, 1, first.Envelope)) {
			t.Errorf("batch leaf %q", leaves[1].Data)
		}
		// Sizes beyond the tree are refused.
		if _, err := s.InclusionProof(ctx, 0, size+1); !errors.Is(err, ErrLogRange) {
			t.Errorf("inclusion beyond the tree: %v", err)
		}
		if _, err := s.ConsistencyProof(ctx, size, size+1); !errors.Is(err, ErrLogRange) {
			t.Errorf("consistency beyond the tree: %v", err)
		}
		if _, err := s.InclusionProof(ctx, size, size); !errors.Is(err, ErrLogRange) {
			t.Errorf("inclusion of a leaf beyond the size: %v", err)
		}
		// Another key is refused: old checkpoints must verify with one.
		if err := s.StartLog(ctx, logSigner(t)); !errors.Is(err, ErrLogKey) {
			t.Errorf("start with another key: %v", err)
		}
	})
}

func TestVoucherLeafRoundTrip(t *testing.T) {
	m := VoucherMovement{Movement: MoveCharge, Voucher: "v1", Entity: "E1", AmountFen: 12, Record: "r", TimeMs: 5}
	data := m.Leaf()
	want := "gpumeter-voucher/v1\nmovement charge\nvoucher v1\nentity E1\namount_fen 12\nrecord r\ntime_ms 5\nexpires_ms 0\n"
	if string(data) != want {
		t.Fatalf("leaf %q", data)
	}
	if got, err := ParseVoucherLeaf(data); err != nil || got != m {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	for _, bad := range []string{"", want[:len(want)-1], want + "x\n", string(bytes.Replace(data, []byte("12"), []byte("012"), 1)),
		string(bytes.Replace(data, []byte("amount_fen"), []byte("amount"), 1))} {
		if _, err := ParseVoucherLeaf([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// TestLogNotStarted: a database without a log appends nothing.
func TestLogNotStarted(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		s := open(t)
		billSetup(t, s)
		n := newBillNode(t, s, "n1")
		sub := n.batch(n.hour(1, bt, "acme"))
		res, err := s.Ingest(context.Background(), sub)
		if err != nil || res.LogIndex != nil {
			t.Fatalf("%+v, %v; want no leaf", res, err)
		}
		if _, _, err := s.LogSize(context.Background()); !errors.Is(err, ErrLogNotStarted) {
			t.Errorf("size: %v", err)
		}
		var c int
		must(t, s.queryRow(context.Background(), `SELECT COUNT(*) FROM log_leaves`).Scan(&c))
		if c != 0 {
			t.Errorf("%d leaves", c)
		}
	})
}

// TestLogAppendFailureStoresNothing: when the append fails (here a node
// the tree needs is already taken, as a crash between two statements
// could never leave but a hand edit could), the batch and its billing roll
// back with it: no leaf without its rows, no rows without their leaf. A
// transaction that fails after queuing leaves appends none of them.
func TestLogAppendFailureStoresNothing(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := context.Background()
		s, sg := openLogged(t, open(t))
		n := newBillNode(t, s, "n1")
		n.ingest(n.hour(1, bt, "acme"))
		// A failing transaction that queued a leaf.
		boom := errors.New("boom")
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			s.logVoucher(tx, VoucherMovement{Movement: MoveIssue, Voucher: "x"})
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		must(t, s.writeTx(ctx, func(tx *sql.Tx) error {
			_, err := s.exec(ctx, tx, `INSERT INTO log_nodes (level, idx, hash) VALUES (1, 0, ?)`, make([]byte, 32))
			return err
		}))
		sub := n.batch(n.hour(1, bt.Add(time.Hour), "acme"))
		if _, err := s.Ingest(ctx, sub); err == nil {
			t.Fatal("ingest with a broken tree succeeded")
		}
		c, err := s.Count(ctx)
		must(t, err)
		var leaves, charges int
		must(t, s.queryRow(ctx, `SELECT COUNT(*) FROM log_leaves`).Scan(&leaves))
		must(t, s.queryRow(ctx, `SELECT COUNT(*) FROM charges`).Scan(&charges))
		size, _, err := s.LogSize(ctx)
		must(t, err)
		if c.Batches != 1 || charges != 1 || leaves != 1 || size != 1 {
			t.Errorf("%d batches, %d charges, %d leaves, size %d; want 1 each", c.Batches, charges, leaves, size)
		}
		must(t, s.writeTx(ctx, func(tx *sql.Tx) error {
			_, err := s.exec(ctx, tx, `DELETE FROM log_nodes WHERE level = 1 AND idx = 0`)
			return err
		}))
		if _, err := s.Ingest(ctx, sub); err != nil {
			t.Fatal(err)
		}
		checkTree(t, s, sg)
	})
}

// TestLogConcurrentTwoStores: nodes ingest at once through two Stores
// (two processes' pools); the tree has one leaf per batch and verifies.
func TestLogConcurrentTwoStores(t *testing.T) {
	eachSource(t, func(t *testing.T, driver string, source func(t *testing.T) string) {
		ctx := context.Background()
		src := source(t)
		stores := []*Store{openSource(t, driver, src), openSource(t, driver, src)}
		sg := logSigner(t)
		must(t, stores[0].StartLog(ctx, sg))
		must(t, stores[1].StartLog(ctx, sg))
		billSetup(t, stores[0])
		const nodes, batches = 4, 6
		var (
			mu   sync.Mutex
			seen = map[uint64]bool{}
			fns  []func()
		)
		for i := range nodes {
			n := newBillNode(t, stores[0], fmt.Sprintf("n%d", i))
			var subs []Submission
			for b := range batches {
				subs = append(subs, n.batch(n.hour(1, bt.Add(time.Duration(b)*time.Hour), "acme")))
			}
			fns = append(fns, func() {
				for b, sub := range subs {
					res, err := stores[(i+b)%2].Ingest(ctx, sub)
					if err != nil || res.LogIndex == nil {
						t.Errorf("node %d batch %d: %+v, %v", i, b, res, err)
						return
					}
					mu.Lock()
					if seen[*res.LogIndex] {
						t.Errorf("leaf %d given twice", *res.LogIndex)
					}
					seen[*res.LogIndex] = true
					mu.Unlock()
				}
			})
		}
		race(fns...)
		size, leaves := checkTree(t, stores[1], sg)
		batchLeaves := 0
		for _, l := range leaves {
			if l.Kind == tlog.KindBatch {
				batchLeaves++
			}
		}
		if size != nodes*batches || batchLeaves != nodes*batches || len(seen) != nodes*batches {
			t.Errorf("size %d, %d batch leaves, %d receipts; want %d", size, batchLeaves, len(seen), nodes*batches)
		}
	})
}
