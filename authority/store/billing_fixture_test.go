package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// bt is the start of the billing tests' usage: 2026-11-02 00:00 CST.
var bt = time.Date(2026, 11, 2, 0, 0, 0, 0, cst).UTC()

// billNode is a registered node of provider p1 whose chain the tests
// extend batch by batch. Its GPUs are gpu(1..4); MIG units use
// gpu(1) as parent.
type billNode struct {
	t     testing.TB
	s     *Store
	id    string
	keyID string
	prev  string
	next  uint64
}

func newBillNode(t testing.TB, s *Store, id string) *billNode {
	t.Helper()
	k, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := &billNode{t: t, s: s, id: id, keyID: signing.KeyID(k), next: 1}
	gpus := []string{n.gpu(1), n.gpu(2), n.gpu(3), n.gpu(4)}
	if err := s.RegisterNode(context.Background(), Registration{ID: id, Provider: "p1", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", gpus...)}, t0); err != nil {
		t.Fatal(err)
	}
	return n
}

// gpu is the node's i-th GPU (1-4): a canonical UUID derived from the
// node id.
func (n *billNode) gpu(i int) string { return billGPU(n.id, i) }

// billGPU is GPU i of the bill node with id node.
func billGPU(node string, i int) string {
	return fmt.Sprintf("GPU-%08x-0000-4000-8000-%012d", crc32.ChecksumIEEE([]byte(node)), i)
}

// use is a usage record of tenant on the node's GPU i (whole GPU, H100)
// for ms of the window [start, start+d).
func (n *billNode) use(i int, start time.Time, d time.Duration, tenant string, ms int64) protocol.Record {
	return protocol.Record{Provider: "p1", Kind: protocol.KindUsage, Tenant: tenant, GPUUUID: n.gpu(i), ParentUUID: n.gpu(i),
		Model: "H100-SXM5-80GB", SliceNum: 1, SliceDen: 1, WindowStart: start, WindowEnd: start.Add(d), GPUMillis: ms}
}

// hour is use for a whole hour of GPU i from start.
func (n *billNode) hour(i int, start time.Time, tenant string) protocol.Record {
	return n.use(i, start, time.Hour, tenant, 3_600_000)
}

// batch builds the node's next batch from recs without sending it.
func (n *billNode) batch(recs ...protocol.Record) Submission {
	sub := batchOf(n.id, n.next, n.prev, n.keyID, recs...)
	n.next += uint64(len(recs))
	n.prev = sub.Hash
	return sub
}

// ingest sends the node's next batch and requires it stored.
func (n *billNode) ingest(recs ...protocol.Record) Submission {
	n.t.Helper()
	sub := n.batch(recs...)
	res, err := n.s.Ingest(context.Background(), sub)
	if err != nil || res.Duplicate {
		n.t.Fatalf("ingest batch %d: %+v, %v", sub.Batch.FirstSeq, res, err)
	}
	return sub
}

// billSetup is the common setup: entity E1 mapped from tenant acme of p1,
// and a card of 1000 fen per H100-hour at p1 from 2026.
func billSetup(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	for _, err := range []error{
		s.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme"}),
		s.MapTenant(ctx, "p1", "acme", "E1"),
		s.AddRateCard(ctx, billing.RateCard{ID: "h100", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 1000, ValidFrom: y2026}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// lineOf is the claim line of a record (p1's claim over 2026-2027).
func lineOf(t testing.TB, s *Store, rec protocol.Record) billing.Line {
	t.Helper()
	c, err := s.Claim(context.Background(), "p1", y2026, y2028)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range c.Lines {
		if l.RecordID == rec.ID {
			return l
		}
	}
	t.Fatalf("no line for record %s (seq %d)", rec.ID, rec.Seq)
	return billing.Line{}
}

// balance is a voucher's balance.
func balance(t testing.TB, s *Store, id string) billing.Fen {
	t.Helper()
	var b int64
	if err := s.queryRow(context.Background(), `SELECT balance_fen FROM vouchers WHERE id = ?`, id).Scan(&b); err != nil {
		t.Fatalf("balance of %s: %v", id, err)
	}
	return billing.Fen(b)
}

// grantsString writes grants as the CSV does: "v1:50;v2:50".
func grantsString(gs []billing.Grant) string {
	s := ""
	for i, g := range gs {
		if i > 0 {
			s += ";"
		}
		s += fmt.Sprintf("%s:%d", g.Voucher, g.Amount)
	}
	return s
}

// wantLine checks a line's cost, subsidy, grants and note.
func wantLine(t testing.TB, l billing.Line, cost, subsidy billing.Fen, grants, note string) {
	t.Helper()
	if l.Cost != cost || l.Subsidy != subsidy || l.Payable != cost-subsidy || grantsString(l.Grants) != grants || l.Note != note {
		t.Errorf("record %s: cost %d subsidy %d payable %d grants %q note %q; want cost %d subsidy %d grants %q note %q",
			l.RecordID, l.Cost, l.Subsidy, l.Payable, grantsString(l.Grants), l.Note, cost, subsidy, grants, note)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
