package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

func TestAppendCheckpointSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	s := openSpool(t, path, spool.Options{})
	if cp, err := s.Checkpoint(); err != nil || cp != nil {
		t.Fatalf("new spool checkpoint = %q, %v; want nil", cp, err)
	}
	if err := s.Append(ctx, windowRecs(0, 2), []byte("cp-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, append(windowRecs(1, 2), windowRecs(2, 2)...), []byte("cp-2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, path, spool.Options{})
	cp, err := s.Checkpoint()
	if err != nil || string(cp) != "cp-2" {
		t.Fatalf("checkpoint after reopen = %q, %v; want cp-2", cp, err)
	}
	if st := s.Stats(); st.PendingRecords != 12 || st.PendingBytes == 0 || st.FileBytes == 0 {
		t.Fatalf("stats after reopen %+v, want 12 pending records", st)
	}
	batches := sealAll(t, s, newSealFunc(t), 0)
	if len(batches) != 1 || batches[0].FirstSeq != 1 || batches[0].LastSeq != 12 {
		t.Fatalf("sealed %+v, want one batch 1..12", batches)
	}
}

func TestAppendRefusesInvalidRecords(t *testing.T) {
	s := openSpool(t, tempPath(t), spool.Options{})
	recs := windowRecs(0, 1)
	recs[0].Tenant = ""
	err := s.Append(context.Background(), recs, []byte("cp"))
	if !errors.Is(err, ledger.ErrKindFields) {
		t.Fatalf("err = %v, want ErrKindFields", err)
	}
	if cp, _ := s.Checkpoint(); cp != nil || s.Stats().PendingRecords != 0 {
		t.Fatalf("refused append stored something: checkpoint %q, stats %+v", cp, s.Stats())
	}
}

func TestSealNextSequenceAndChainAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	seal := newSealFunc(t)
	s := openSpool(t, path, spool.Options{})
	appendWindows(t, s, 3, 3) // 6 records per window
	// 10 records per batch: whole windows only, so 6 + 6 + 6.
	first := sealAll(t, s, seal, 10)
	if len(first) != 3 || first[0].LastSeq != 6 || first[1].FirstSeq != 7 || first[2].LastSeq != 18 {
		t.Fatalf("batches %v, want 1..6, 7..12, 13..18", ranges(first))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSpool(t, path, spool.Options{})
	if acked, sealed, hash := s.Head(); acked != 0 || sealed != 18 || hash != first[2].Hash {
		t.Fatalf("head after reopen = %d, %d, %s; want 0, 18, %s", acked, sealed, hash, first[2].Hash)
	}
	if err := s.Append(ctx, windowRecs(3, 3), nil); err != nil {
		t.Fatal(err)
	}
	// A window larger than a batch is the only one split.
	if err := s.Append(ctx, windowRecs(4, 5), nil); err != nil { // 10 records
		t.Fatal(err)
	}
	more := sealAll(t, s, seal, 4)
	if got := ranges(more); fmt.Sprint(got) != "[[19 22] [23 24] [25 28] [29 32] [33 34]]" {
		t.Fatalf("batches %v", got)
	}
	un, err := s.Unacked(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs := openAll(t, un, 1, "")
	if len(recs) != 34 {
		t.Fatalf("%d records in batches, want 34", len(recs))
	}
	if lim, _ := s.Unacked(ctx, 2); len(lim) != 2 || lim[1].FirstSeq != 7 {
		t.Fatalf("Unacked(2) = %v", lim)
	}
	if _, ok, err := s.SealNext(ctx, seal, 0); ok || err != nil {
		t.Fatalf("SealNext with nothing pending = %v, %v", ok, err)
	}
}

func TestSealNextFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	s := openSpool(t, tempPath(t), spool.Options{})
	if err := s.Append(ctx, windowRecs(0, 1), nil); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("hsm unavailable")
	tests := []struct {
		name string
		seal spool.SealFunc
		want error
	}{
		{"sealer error", func(uint64, string, []protocol.Record) (ledger.Sealed, error) { return ledger.Sealed{}, boom }, boom},
		{"wrong seqs", func(f uint64, _ string, r []protocol.Record) (ledger.Sealed, error) {
			return ledger.Sealed{FirstSeq: f + 1, LastSeq: f + uint64(len(r)), Hash: protocol.Hash(nil), Envelope: []byte("{}")}, nil
		}, nil},
		{"bad hash", func(f uint64, _ string, r []protocol.Record) (ledger.Sealed, error) {
			return ledger.Sealed{FirstSeq: f, LastSeq: f + uint64(len(r)) - 1, Hash: "zz", Envelope: []byte("{}")}, nil
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := s.SealNext(ctx, tc.seal, 0)
			if err == nil || ok || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("SealNext = %v, %v; want error %v", ok, err, tc.want)
			}
			if _, sealed, _ := s.Head(); sealed != 0 || s.Stats().PendingRecords != 2 {
				t.Fatalf("failed seal changed state: sealed %d, stats %+v", sealed, s.Stats())
			}
		})
	}
}

func TestAck(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	s := openSpool(t, path, spool.Options{})
	appendWindows(t, s, 4, 1)
	sealAll(t, s, newSealFunc(t), 2) // batches 1..2, 3..4, 5..6, 7..8
	steps := []struct {
		name        string
		head        uint64
		wantErr     error
		wantAcked   uint64
		wantUnacked []uint64 // first seqs
	}{
		{"ack first batch", 2, nil, 2, []uint64{3, 5, 7}},
		{"ack mid-batch keeps the batch", 5, nil, 5, []uint64{5, 7}},
		{"backwards ack ignored", 1, nil, 5, []uint64{5, 7}},
		{"same ack again", 5, nil, 5, []uint64{5, 7}},
		{"ack beyond sealed", 9, spool.ErrAckAhead, 5, []uint64{5, 7}},
		{"ack all", 8, nil, 8, nil},
	}
	for _, st := range steps {
		err := s.Ack(ctx, st.head)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Fatalf("%s: Ack(%d) = %v, want %v", st.name, st.head, err, st.wantErr)
		}
		un, err := s.Unacked(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		var firsts []uint64
		for _, b := range un {
			firsts = append(firsts, b.FirstSeq)
		}
		if acked, _, _ := s.Head(); acked != st.wantAcked || fmt.Sprint(firsts) != fmt.Sprint(st.wantUnacked) {
			t.Fatalf("%s: acked %d, unacked %v; want %d, %v", st.name, acked, firsts, st.wantAcked, st.wantUnacked)
		}
		if got := s.Stats().UnackedBatches; got != int64(len(st.wantUnacked)) {
			t.Fatalf("%s: stats unacked %d, want %d", st.name, got, len(st.wantUnacked))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, path, spool.Options{})
	if acked, sealed, _ := s.Head(); acked != 8 || sealed != 8 {
		t.Fatalf("head after reopen %d, %d; want 8, 8", acked, sealed)
	}
	if st := s.Stats(); st.UnackedBatches != 0 || st.UnackedBytes != 0 {
		t.Fatalf("stats after acking all: %+v", st)
	}
}

func TestDeadLetter(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	s := openSpool(t, path, spool.Options{})
	appendWindows(t, s, 3, 1)
	sealed := sealAll(t, s, newSealFunc(t), 2)
	if err := s.DeadLetter(ctx, 3, "422 gpu-not-registered"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, 3, "again"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("second dead letter of 3: %v, want ErrNotFound", err)
	}
	if err := s.Ack(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, path, spool.Options{})
	dead, err := s.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].FirstSeq != 3 || dead[0].LastSeq != 4 || dead[0].Reason != "422 gpu-not-registered" ||
		dead[0].Hash != sealed[1].Hash || string(dead[0].Envelope) != string(sealed[1].Envelope) || dead[0].At.IsZero() {
		t.Fatalf("dead letters %+v", dead)
	}
	if st := s.Stats(); st.DeadLetters != 1 || st.UnackedBatches != 0 {
		t.Fatalf("stats %+v, want 1 dead letter, 0 unacked", st)
	}
}

func TestOpenLocked(t *testing.T) {
	path := tempPath(t)
	openSpool(t, path, spool.Options{})
	_, err := spool.Open(spool.Options{Path: path})
	if !errors.Is(err, spool.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts spool.Options
	}{
		{"no path", spool.Options{}},
		{"negative cap", spool.Options{Path: tempPath(t), MaxBytes: -1}},
		{"tiny merge window", spool.Options{Path: tempPath(t), MergeWindow: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := spool.Open(tc.opts); err == nil {
				_ = s.Close()
				t.Fatal("opened")
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s := openSpool(t, tempPath(t), spool.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), windowRecs(0, 1), nil); !errors.Is(err, spool.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestCompact(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	s := openSpool(t, path, spool.Options{})
	seal := newSealFunc(t)
	for i := range 200 {
		if err := s.Append(ctx, windowRecs(i, 20), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	sealAll(t, s, seal, 1000)
	_, sealedHead, _ := s.Head()
	if err := s.Ack(ctx, sealedHead-40); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().FileBytes
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	after := s.Stats().FileBytes
	if after*2 > before {
		t.Fatalf("file %d bytes after compaction, %d before: want less than half", after, before)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	un, err := s.Unacked(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	acked, _, _ := s.Head()
	if len(un) != 1 || un[0].LastSeq != sealedHead || acked != sealedHead-40 {
		t.Fatalf("after compaction: acked %d, %d unacked batches", acked, len(un))
	}
	if cp, err := s.Checkpoint(); err != nil || string(cp) != "199" {
		t.Fatalf("checkpoint after compaction %q, %v", cp, err)
	}
	// Still writable, and the chain continues.
	if err := s.Append(ctx, windowRecs(500, 1), nil); err != nil {
		t.Fatal(err)
	}
	sealAll(t, s, seal, 0)
	un, err = s.Unacked(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	openAll(t, un[1:], sealedHead+1, un[0].Hash)
}

func ranges(bs []ledger.Sealed) [][2]uint64 {
	var out [][2]uint64
	for _, b := range bs {
		out = append(out, [2]uint64{b.FirstSeq, b.LastSeq})
	}
	return out
}
