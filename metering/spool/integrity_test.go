package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// filled is a closed spool file with n windows pending and sealed batches
// of 2 windows each when seal is true.
func filled(t *testing.T, n int, seal bool) string {
	t.Helper()
	path := tempPath(t)
	s, err := spool.Open(spool.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.Append(context.Background(), windowRecs(i, 2), nil); err != nil {
			t.Fatal(err)
		}
	}
	if seal {
		sealAll(t, s, newSealFunc(t), 8)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func corruptFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOpenQuarantinesDamagedFile(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"truncated": func(t *testing.T, path string) {
			// Cut inside the live pages: bbolt grows a file ahead of its
			// high-water mark, so half the file size may cut only pages
			// not in use yet (then nothing is damaged).
			if err := os.Truncate(path, 6*4096+100); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to its first pages": func(t *testing.T, path string) {
			// bbolt reads the freelist past the end: a SIGBUS, recovered.
			if err := os.Truncate(path, 3*4096); err != nil {
				t.Fatal(err)
			}
		},
		"meta pages flipped": func(t *testing.T, path string) {
			flip(t, path, 0, 2*4096)
		},
		"data page flipped": func(t *testing.T, path string) {
			// Every page after the meta pages and the freelist: branch
			// and leaf headers are garbage.
			fi, _ := os.Stat(path)
			for off := int64(3 * 4096); off < fi.Size(); off += 4096 {
				flip(t, path, off, 16)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path := filled(t, 20, true)
			damage(t, path)
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			if _, err := spool.Open(spool.Options{Path: path, NoRepair: true}); !errors.Is(err, spool.ErrDamaged) {
				t.Fatalf("NoRepair open: %v, want ErrDamaged", err)
			}
			s := openSpool(t, path, spool.Options{Now: func() time.Time { return now }})
			moved, cause := s.QuarantinedFile()
			if moved != path+".corrupt-20261201T100000Z" || !errors.Is(cause, spool.ErrDamaged) {
				t.Fatalf("quarantined %q (%v)", moved, cause)
			}
			if got := corruptFiles(t, path); len(got) != 1 || got[0] != moved {
				t.Fatalf("corrupt files %v", got)
			}
			if !s.NeedsAnchor() || !s.Stats().NeedsAnchor {
				t.Fatal("a replaced spool must need anchoring")
			}
			if _, _, err := s.SealNext(context.Background(), newSealFunc(t), 0); !errors.Is(err, spool.ErrNeedsAnchor) {
				t.Fatalf("seal before anchor: %v", err)
			}
			// The agent goes on: appends work.
			if err := s.Append(context.Background(), windowRecs(30, 2), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func flip(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xA5
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

// flipValue changes one byte of every occurrence of needle in the file
// (bbolt copies pages on write, so freed pages may hold old copies).
func flipValue(t *testing.T, path, needle string, delta int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; ; {
		j := strings.Index(string(data[i:]), needle)
		if j < 0 {
			break
		}
		flip(t, path, int64(i+j+delta), 1)
		i += j + len(needle)
		n++
	}
	if n == 0 {
		t.Fatalf("%q not in the file", needle)
	}
}

func TestDamagedPendingEntryIsQuarantinedAndSealingGoesOn(t *testing.T) {
	path := filled(t, 3, false)
	// The first pending entry's JSON starts with `[{"`; damage its opening bracket.
	flipValue(t, path, `[{"id":"`+windowRecs(0, 2)[0].ID, 0)
	s := openSpool(t, path, spool.Options{})
	if s.NeedsAnchor() {
		t.Fatal("a damaged value is not a damaged file")
	}
	got := sealAll(t, s, newSealFunc(t), 0)
	if len(got) != 1 || got[0].LastSeq-got[0].FirstSeq+1 != 8 {
		t.Fatalf("sealed %+v, want one batch of the two intact windows (8 records)", got)
	}
	st := s.Stats()
	if st.Quarantined != 1 || st.PendingRecords != 0 || st.PendingBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	q, err := s.QuarantinedEntries(context.Background())
	if err != nil || len(q) != 1 || q[0].What != "pending" || q[0].Key != 0 {
		t.Fatalf("quarantined %+v, %v", q, err)
	}
}

func TestDamagedBatchIsQuarantinedAndAnchorResealsTheRest(t *testing.T) {
	path := filled(t, 6, true) // 3 batches: 1..8, 9..16, 17..24
	s := openSpool(t, path, spool.Options{Window: time.Minute})
	bs, err := s.Unacked(context.Background(), 0)
	if err != nil || len(bs) != 3 {
		t.Fatalf("%d batches, %v", len(bs), err)
	}
	hash1 := bs[0].Hash
	s.Close()
	// Damage the second batch's stored hash (the envelope stays readable).
	flipValue(t, path, mustHex(t, bs[1].Hash), 0)
	s = openSpool(t, path, spool.Options{Window: time.Minute})
	if _, err := s.Unacked(context.Background(), 0); !errors.Is(err, spool.ErrNeedsAnchor) {
		t.Fatalf("unacked: %v", err)
	}
	if st := s.Stats(); st.Quarantined != 1 || !st.NeedsAnchor || st.UnackedBatches != 2 {
		t.Fatalf("stats %+v", st)
	}
	// The authority holds batch 1..8: its window ended at t0+2m.
	lwe := t0.Add(2 * time.Minute)
	res, err := s.Anchor(context.Background(), 8, hash1, &lwe, spool.AnchorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Batch 1..8 acknowledged; 17..24 unsealed; 9..16 (windows 2,3) lost:
	// a spool_lost gap for both units over [t0+2m, t0+4m), per minute.
	if res.AckedBatches != 1 || res.UnsealedBatches != 1 || res.UnsealedRecords != 8 || res.GapRecords != 4 || res.GapPending {
		t.Fatalf("anchor %+v", res)
	}
	if acked, sealed, h := s.Head(); acked != 8 || sealed != 8 || h != hash1 || s.NeedsAnchor() {
		t.Fatalf("head %d %d %s", acked, sealed, h)
	}
	sealAll(t, s, newSealFunc(t), 0)
	bs, err = s.Unacked(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	recs := openAll(t, bs, 9, hash1)
	if len(recs) != 12 {
		t.Fatalf("%d records, want 4 gap + 8", len(recs))
	}
	for i, r := range recs[:4] {
		if r.Kind != protocol.KindGap || r.GapReason != protocol.GapSpoolLost || r.GPUMillis != 60000 ||
			!r.WindowStart.Equal(t0.Add(time.Duration(2+i/2)*time.Minute)) {
			t.Fatalf("gap record %d: %+v", i, r)
		}
	}
	if !recs[4].WindowStart.Equal(t0.Add(4 * time.Minute)) {
		t.Fatalf("first resealed record at %s", recs[4].WindowStart)
	}
}

func mustHex(t *testing.T, h string) string {
	t.Helper()
	b := make([]byte, 0, 32)
	for i := 0; i < len(h); i += 2 {
		var v byte
		for _, c := range h[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		b = append(b, v)
	}
	return string(b)
}

func TestLostSpoolAnchorThenFirstWindowGetsTheGap(t *testing.T) {
	s := openSpool(t, tempPath(t), spool.Options{Window: time.Minute})
	lwe := t0.Add(-90 * time.Second) // unaligned: the gap starts mid-window
	res, err := s.Anchor(context.Background(), 58, strings.Repeat("ab", 32), &lwe, spool.AnchorOptions{})
	if err != nil || !res.GapPending || res.GapRecords != 0 {
		t.Fatalf("anchor %+v, %v", res, err)
	}
	if err := s.Append(context.Background(), windowRecs(0, 1), nil); err != nil {
		t.Fatal(err)
	}
	sealed := sealAll(t, s, newSealFunc(t), 0)
	bs, _ := s.Unacked(context.Background(), 0)
	recs := openAll(t, bs, 59, strings.Repeat("ab", 32))
	if len(sealed) != 1 || len(recs) != 4 {
		t.Fatalf("%d batches, %d records", len(sealed), len(recs))
	}
	want := [][2]time.Time{{lwe, t0.Add(-time.Minute)}, {t0.Add(-time.Minute), t0}}
	for i, w := range want {
		r := recs[i]
		if r.GapReason != protocol.GapSpoolLost || !r.WindowStart.Equal(w[0]) || !r.WindowEnd.Equal(w[1]) || r.GPUMillis != w[1].Sub(w[0]).Milliseconds() {
			t.Fatalf("gap %d: %+v", i, r)
		}
	}
}

func TestRequeueSendsTheSealedBytes(t *testing.T) {
	s := openSpool(t, filled(t, 4, true), spool.Options{})
	bs, _ := s.Unacked(context.Background(), 0)
	if err := s.DeadLetter(context.Background(), bs[0].FirstSeq, "400 invalid-record"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Requeue(context.Background(), 99, false); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("requeue of a missing one: %v", err)
	}
	got, err := s.Requeue(context.Background(), bs[0].FirstSeq, false)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	after, _ := s.Unacked(context.Background(), 0)
	if len(after) != 2 || string(after[0].Envelope) != string(bs[0].Envelope) || after[0].Hash != bs[0].Hash {
		t.Fatal("requeued batch differs from the sealed one")
	}
	if st := s.Stats(); st.DeadLetters != 0 || st.UnackedBatches != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAnchorResealsDeadLetters(t *testing.T) {
	s := openSpool(t, filled(t, 4, true), spool.Options{})
	bs, _ := s.Unacked(context.Background(), 0)
	if err := s.DeadLetter(context.Background(), bs[0].FirstSeq, "400 invalid-record"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Anchor(context.Background(), 0, "", nil, spool.AnchorOptions{ResealDeadLetters: true})
	if err != nil || res.ResealDeadLetters != 1 || res.UnsealedRecords != 16 {
		t.Fatalf("%+v %v", res, err)
	}
	sealAll(t, s, newSealFunc(t), 0)
	now, _ := s.Unacked(context.Background(), 0)
	recs := openAll(t, now, 1, "")
	if len(recs) != 16 || !recs[0].WindowStart.Equal(t0) {
		t.Fatalf("%d records", len(recs))
	}
	dl, _ := s.DeadLetters(context.Background())
	if len(dl) != 1 || dl[0].ReanchoredAt == nil || s.Stats().DeadLetters != 0 {
		t.Fatalf("dead letters %+v", dl)
	}
	if _, err := s.Requeue(context.Background(), dl[0].FirstSeq, false); err == nil {
		t.Fatal("a re-anchored dead letter was requeued")
	}
}

// TestVerifyCountsEachBucket: Verify counts the entries of each bucket
// into its own field and finds nothing wrong in an intact spool.
func TestVerifyCountsEachBucket(t *testing.T) {
	ctx := context.Background()
	s, _ := retainedSpool(t, 2, spool.Options{RetainAcked: time.Hour, Now: (&clockAt{t0}).now}) // seqs 1..4
	for i := 2; i < 4; i++ {
		if err := s.Append(ctx, windowRecs(i, 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	sealAll(t, s, newSealFunc(t), 2) // batches 5..6 and 7..8
	if err := s.DeadLetter(ctx, 5, "422 over-wall-time"); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, windowRecs(4, 1), nil); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PendingEntries != 1 || rep.Batches != 1 || rep.DeadLetters != 1 || rep.Retained != 2 || len(rep.Problems) != 0 {
		t.Fatalf("Verify = %+v, want 1 pending entry, 1 batch, 1 dead letter, 2 retained, no problem", rep)
	}
}
