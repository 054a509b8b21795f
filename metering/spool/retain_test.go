package spool_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
)

// clockAt is a settable clock for the spool's Now.
type clockAt struct{ t time.Time }

func (c *clockAt) now() time.Time { return c.t }

// retainedSpool seals n one-window batches and acknowledges them all.
func retainedSpool(t *testing.T, n int, opts spool.Options) (*spool.Spool, []spool.Batch) {
	t.Helper()
	ctx := context.Background()
	if opts.Path == "" {
		opts.Path = tempPath(t)
	}
	s := openSpool(t, opts.Path, opts)
	for i := range n {
		if err := s.Append(ctx, windowRecs(i, 1), nil); err != nil {
			t.Fatal(err)
		}
		sealAll(t, s, newSealFunc(t), 0)
	}
	sent, err := s.Unacked(ctx, 0)
	if err != nil || len(sent) != n {
		t.Fatalf("unacked %d, %v", len(sent), err)
	}
	if err := s.Ack(ctx, sent[n-1].LastSeq); err != nil {
		t.Fatal(err)
	}
	return s, sent
}

func TestAckRetainsAndUnackRestoresByteForByte(t *testing.T) {
	ctx := context.Background()
	clk := &clockAt{t0}
	s, sent := retainedSpool(t, 4, spool.Options{RetainAcked: time.Hour, Now: clk.now})
	st := s.Stats()
	if st.UnackedBatches != 0 || st.AckedBatches != 4 || st.AckedBytes == 0 {
		t.Fatalf("after ack: %+v", st)
	}
	kept, err := s.Retained(ctx)
	if err != nil || len(kept) != 4 || !kept[0].AckedAt.Equal(t0) {
		t.Fatalf("retained %+v, %v", kept, err)
	}
	// The authority was restored to the end of batch 2 (seq 4).
	head := sent[1].LastSeq
	if prev, err := sent[2].PrevHash(); err != nil || prev != sent[1].Hash {
		t.Fatalf("prev hash of batch 3 = %q, %v; want %s", prev, err, sent[1].Hash)
	}
	moved, err := s.Unack(ctx, head)
	if err != nil || len(moved) != 2 {
		t.Fatalf("unack: %d, %v", len(moved), err)
	}
	again, err := s.Unacked(ctx, 0)
	if err != nil || len(again) != 2 {
		t.Fatalf("unacked after unack: %d, %v", len(again), err)
	}
	for i, b := range again {
		if !bytes.Equal(b.Envelope, sent[i+2].Envelope) || b.Hash != sent[i+2].Hash {
			t.Fatalf("batch %d changed on its way back", b.FirstSeq)
		}
	}
	if acked, _, _ := s.Head(); acked != head {
		t.Fatalf("acked mark %d, want %d", acked, head)
	}
	if st := s.Stats(); st.AckedBatches != 2 || st.UnackedBatches != 2 {
		t.Fatalf("after unack: %+v", st)
	}
}

func TestUnackNamesTheLostRange(t *testing.T) {
	ctx := context.Background()
	clk := &clockAt{t0}
	s, sent := retainedSpool(t, 3, spool.Options{RetainAcked: time.Hour, Now: clk.now})
	// A day later, the next ack prunes what is older than an hour.
	clk.t = t0.Add(24 * time.Hour)
	if err := s.Append(ctx, windowRecs(10, 1), nil); err != nil {
		t.Fatal(err)
	}
	last := sealAll(t, s, newSealFunc(t), 0)
	if err := s.Ack(ctx, last[0].LastSeq); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.AckedBatches != 1 {
		t.Fatalf("retained after expiry: %d, want 1", st.AckedBatches)
	}
	_, err := s.Unack(ctx, sent[0].LastSeq)
	if !errors.Is(err, spool.ErrNotRetained) {
		t.Fatalf("unack over an expired range: %v", err)
	}
	if acked, _, _ := s.Head(); acked != last[0].LastSeq {
		t.Fatalf("a failed unack moved the mark to %d", acked)
	}
}

func TestCapDropsRetainedBeforeMerging(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	s, _ := retainedSpool(t, 3, spool.Options{Path: path, RetainAcked: time.Hour})
	st := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with a cap that two of the three retained batches fill.
	s2 := openSpool(t, path, spool.Options{RetainAcked: time.Hour, MaxBytes: st.AckedBytes * 2 / 3})
	if err := s2.Append(ctx, windowRecs(20, 1), nil); err != nil {
		t.Fatal(err)
	}
	got := s2.Stats()
	if got.AckedBatches >= 3 || got.PendingRecords != 2 {
		t.Fatalf("over the cap: %+v (retained batches must go first, pending untouched)", got)
	}
	kept, _ := s2.Retained(ctx)
	if len(kept) > 0 && kept[0].FirstSeq == 1 {
		t.Fatalf("the oldest retained batch was kept over newer ones: %+v", kept[0].FirstSeq)
	}
}

func TestAnchorDropsRetainedPastHead(t *testing.T) {
	ctx := context.Background()
	s, sent := retainedSpool(t, 3, spool.Options{RetainAcked: time.Hour})
	if _, err := s.Anchor(ctx, sent[0].LastSeq, sent[0].Hash, nil, spool.AnchorOptions{}); err != nil {
		t.Fatal(err)
	}
	kept, err := s.Retained(ctx)
	if err != nil || len(kept) != 1 || kept[0].FirstSeq != 1 {
		t.Fatalf("retained after anchor: %+v, %v", kept, err)
	}
}

func TestCheckpointHistoryAndAcceptLog(t *testing.T) {
	ctx := context.Background()
	s := openSpool(t, tempPath(t), spool.Options{})
	for _, n := range []uint64{3, 5, 9, 12} {
		if larger, err := s.KeepCheckpoint(ctx, n, []byte{byte(n)}, 3); err != nil || len(larger) != 0 {
			t.Fatalf("keep %d: %v, %v", n, larger, err)
		}
	}
	sizes := func() []uint64 {
		cps, err := s.Checkpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, c := range cps {
			out = append(out, c.Size)
		}
		return out
	}
	if got := sizes(); !slices.Equal(got, []uint64{5, 9, 12}) || s.LogSize() != 12 {
		t.Fatalf("history %v, size %d", got, s.LogSize())
	}
	// A restored log of size 10: 12 is dropped as larger.
	larger, err := s.KeepCheckpoint(ctx, 10, []byte{10}, 3)
	if err != nil || !slices.Equal(larger, []uint64{12}) || !slices.Equal(sizes(), []uint64{5, 9, 10}) {
		t.Fatalf("restore: dropped %v, history %v, %v", larger, sizes(), err)
	}
	if err := s.PinLogKey(ctx, "log+1234+AAAA"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLogConflict(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	_ = s.SetLogConflict(ctx, "second")
	if s.LogConflict() != "first" || s.LogKey() != "log+1234+AAAA" {
		t.Fatalf("conflict %q key %q", s.LogConflict(), s.LogKey())
	}
	was, err := s.AcceptLog(ctx)
	if err != nil || was != "first" || s.LogConflict() != "" || s.LogKey() != "" || s.LogSize() != 0 {
		t.Fatalf("accept: %q %v; conflict %q key %q size %d", was, err, s.LogConflict(), s.LogKey(), s.LogSize())
	}
}
