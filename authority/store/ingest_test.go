package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// batchOf builds a batch of node from records (node set, seqs assigned
// from first, ids recomputed). Its hash depends on prev, first and every
// record id, so equal arguments give an identical batch (a resend).
func batchOf(node string, first uint64, prev, keyID string, recs ...protocol.Record) Submission {
	ids := ""
	for i := range recs {
		recs[i].Node = node
		recs[i].Seq = first + uint64(i)
		recs[i].ID = recs[i].ComputeID()
		ids += recs[i].ID
	}
	b := protocol.Batch{Node: node, KeyID: keyID, FirstSeq: first, LastSeq: first + uint64(len(recs)) - 1, PrevHash: prev, Records: recs}
	return Submission{Batch: b, Hash: protocol.Hash([]byte(fmt.Sprint(node, prev, first, ids))), Envelope: []byte("env"), Received: t0}
}

// TestIngestProtocol walks one node's chain through every outcome the
// store decides: accept, duplicate, gap, GPU checks, a record stored
// twice, a second signer (at a stored seq and at head+1; its flag is
// committed) and that a flagged node's chain goes on. Each rejection must leave the rows and head as they
// were.
func TestIngestProtocol(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := context.Background()
		s := open(t)
		k1, k2 := pubKey(t), pubKey(t)
		if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k1, GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000001", "GPU-00000000-0000-4000-8000-000000000002"}...)}, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterNode(ctx, Registration{ID: "n2", Provider: "p", Key: k2, GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000009"}...)}, t0); err != nil {
			t.Fatal(err)
		}
		key := signing.KeyID(k1)
		b1 := batchOf("n1", 1, "", key, win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 60000), win("GPU-00000000-0000-4000-8000-000000000002", 0, 60, "", 60000))
		b2 := batchOf("n1", 3, b1.Hash, key, win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 1000))
		foreignParent := win("GPU-00000000-0000-4000-8000-000000000009", 60, 120, "a", 1000)
		foreignParent.ParentUUID = "GPU-00000000-0000-4000-8000-000000000009"
		unknownParent := win("GPU-0000000f-0000-4000-8000-00000000000e", 60, 120, "a", 1000)
		unknownParent.ParentUUID = "GPU-0000000f-0000-4000-8000-00000000000e"
		otherProvider := win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 1000)
		otherProvider.Provider = "q"
		steps := []struct {
			name     string
			sub      Submission
			want     error  // nil: stored or duplicate
			dup      bool   // want a duplicate
			head     uint64 // head after the step
			expected uint64 // SeqError.Expected, when want is one
			flagged  bool   // the node is flagged after the step
		}{
			{name: "first batch", sub: b1, head: 2},
			{name: "exact resend", sub: b1, dup: true, head: 2},
			{name: "gap", sub: batchOf("n1", 4, b1.Hash, key, win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 1)), want: ErrSequenceGap, head: 2, expected: 3},
			{name: "parent GPU of another node", sub: batchOf("n1", 3, b1.Hash, key, foreignParent), want: ErrGPUClaimed, head: 2},
			{name: "parent GPU unknown", sub: batchOf("n1", 3, b1.Hash, key, unknownParent), want: ErrGPUNotRegistered, head: 2},
			{name: "provider not the node's", sub: batchOf("n1", 3, b1.Hash, key, otherProvider), want: ErrInvalidRecord, head: 2},
			// Same id as b1's first record; 0 ms keeps the window within wall time.
			{name: "record already stored", sub: batchOf("n1", 3, b1.Hash, key, win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 0)), want: ErrInvalidRecord, head: 2},
			{name: "record twice in the batch", sub: batchOf("n1", 3, b1.Hash, key, win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 100), win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 100)), want: ErrInvalidRecord, head: 2},
			{name: "next batch", sub: b2, head: 3},
			{name: "second signer at a stored seq", sub: batchOf("n1", 1, "", key, win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "b", 60000)), want: ErrSecondSigner, head: 3, expected: 4, flagged: true},
			{name: "second signer at head+1", sub: batchOf("n1", 4, "nope", key, win("GPU-00000000-0000-4000-8000-000000000001", 120, 180, "a", 1)), want: ErrSecondSigner, head: 3, expected: 4, flagged: true},
			{name: "flagged node's next batch accepted", sub: batchOf("n1", 4, b2.Hash, key, win("GPU-00000000-0000-4000-8000-000000000001", 120, 180, "a", 1)), head: 4, flagged: true},
			{name: "flagged node's resend still a duplicate", sub: b2, dup: true, head: 4, flagged: true},
		}
		for _, st := range steps {
			before, err := s.Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Ingest(ctx, st.sub)
			after, cerr := s.Count(ctx)
			if cerr != nil {
				t.Fatal(cerr)
			}
			n, nerr := s.Node(ctx, "n1")
			if nerr != nil {
				t.Fatal(nerr)
			}
			switch {
			case st.want == nil && err != nil:
				t.Fatalf("%s: %v", st.name, err)
			case st.want != nil && !errors.Is(err, st.want):
				t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
			case st.want == nil && (res.Duplicate != st.dup || res.Head != st.head):
				t.Errorf("%s: result %+v, want duplicate %v head %d", st.name, res, st.dup, st.head)
			}
			var se *SeqError
			if errors.As(err, &se) && se.Expected != st.expected {
				t.Errorf("%s: expected seq %d, want %d", st.name, se.Expected, st.expected)
			}
			if n.HeadSeq != st.head {
				t.Errorf("%s: stored head %d, want %d", st.name, n.HeadSeq, st.head)
			}
			stored := st.want == nil && !st.dup
			if !stored && after != before {
				t.Errorf("%s: rows changed %+v -> %+v", st.name, before, after)
			}
			if stored && after.Records != before.Records+int64(len(st.sub.Batch.Records)) {
				t.Errorf("%s: records %d -> %d", st.name, before.Records, after.Records)
			}
			if n.Forked != st.flagged {
				t.Errorf("%s: flagged = %v, want %v", st.name, n.Forked, st.flagged)
			}
		}
	})
}

// TestUsage sums usage records only, per tenant and node, as integers on
// both drivers.
func TestUsage(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := context.Background()
		s := open(t)
		k := pubKey(t)
		if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000001"}...)}, t0); err != nil {
			t.Fatal(err)
		}
		sub := batchOf("n1", 1, "", signing.KeyID(k),
			win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 45000), win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "b", 15000),
			win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 20000), win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "", 40000))
		if _, err := s.Ingest(ctx, sub); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			f    UsageFilter
			want []UsageRow
		}{
			{"all", UsageFilter{From: t0, To: t0.Add(time.Hour)},
				[]UsageRow{{Tenant: "a", Node: "n1", GPUMs: 65000, Records: 2}, {Tenant: "b", Node: "n1", GPUMs: 15000, Records: 1}}},
			{"one tenant", UsageFilter{Tenant: "b", From: t0, To: t0.Add(time.Hour)},
				[]UsageRow{{Tenant: "b", Node: "n1", GPUMs: 15000, Records: 1}}},
			{"period cuts a window", UsageFilter{From: t0, To: t0.Add(90 * time.Second)},
				[]UsageRow{{Tenant: "a", Node: "n1", GPUMs: 45000, Records: 1}, {Tenant: "b", Node: "n1", GPUMs: 15000, Records: 1}}},
			{"other node", UsageFilter{Node: "n2", From: t0, To: t0.Add(time.Hour)}, []UsageRow{}},
		}
		for _, tc := range tests {
			got, err := s.Usage(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: usage %+v, want %+v", tc.name, got, tc.want)
			}
		}
	})
}

// TestIngestInventoryOnly: a batch of nothing but an inventory record (an
// agent that started and has closed no window yet) is stored.
func TestIngestInventoryOnly(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		s := open(t)
		ctx := context.Background()
		k := pubKey(t)
		const gpu = "GPU-00000000-0000-4000-8000-000000000001"
		if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", gpu)}, t0); err != nil {
			t.Fatal(err)
		}
		inv := protocol.InventoryRecord("n1", "p", t0, protocol.WholeGPUs(time.Minute, "NVIDIA H100 80GB HBM3", gpu))
		res, err := s.Ingest(ctx, batchOf("n1", 1, "", signing.KeyID(k), inv))
		if err != nil || res.Head != 1 {
			t.Fatalf("Ingest = %+v, %v; want head 1", res, err)
		}
	})
}
