package tlog_test

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"

	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/internal/tlog/tlogtest"
)

func key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckpointRoundTripAndSplitView(t *testing.T) {
	s, err := tlog.NewSigner("authority.example/log", key(t))
	if err != nil {
		t.Fatal(err)
	}
	// sumdb/note itself reads the key we derived.
	nv, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	tr := tlogtest.NewTree()
	for i := 0; i < 5; i++ {
		tr.Append(tlog.BatchLeaf("node-a", uint64(i*10+1), uint64(i*10+10), []byte{byte(i)}))
	}
	signed, err := s.Sign(5, tr.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(nv)); err != nil {
		t.Fatalf("sumdb/note refuses our checkpoint: %v", err)
	}
	v, err := tlog.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.Open(signed)
	if err != nil || cp.Size != 5 || v.Origin() != "authority.example/log" {
		t.Fatalf("Open = %+v, %v", cp, err)
	}
	again, _ := s.Sign(5, tr.Root())
	if string(again) != string(signed) {
		t.Fatal("one size and root signed twice gave two notes")
	}
	other, _ := s.Sign(5, tlog.LeafHash([]byte("forged")))
	ocp, err := v.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.VerifyConsistency(cp, ocp, nil); !errors.Is(err, tlog.ErrInconsistent) {
		t.Fatalf("split view not detected: %v", err)
	}
	s2, _ := tlog.NewSigner("authority.example/log", key(t))
	foreign, _ := s2.Sign(5, tr.Root())
	if _, err := v.Open(foreign); !errors.Is(err, tlog.ErrSignature) {
		t.Fatalf("another key's checkpoint opened: %v", err)
	}
}

func TestProofs(t *testing.T) {
	tr := tlogtest.NewTree()
	var leaves [][]byte
	var roots [][]byte
	for i := 0; i < 37; i++ {
		d := tlog.BatchLeaf("n", uint64(i), uint64(i), []byte{byte(i)})
		leaves = append(leaves, d)
		tr.Append(d)
		roots = append(roots, tr.Root())
	}
	size := uint64(len(leaves))
	cp := tlog.Checkpoint{Size: size, Root: tr.Root()}
	for i, d := range leaves {
		n, err := proof.Inclusion(uint64(i), size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyInclusion(cp, uint64(i), d, tr.Hashes(n)); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if err := tlog.VerifyInclusion(cp, uint64(i), []byte("other"), tr.Hashes(n)); !errors.Is(err, tlog.ErrInclusion) {
			t.Fatalf("leaf %d: wrong data verified: %v", i, err)
		}
	}
	for from := uint64(1); from < size; from += 5 {
		n, err := proof.Consistency(from, size)
		if err != nil {
			t.Fatal(err)
		}
		old := tlog.Checkpoint{Size: from, Root: roots[from-1]}
		if err := tlog.VerifyConsistency(old, cp, tr.Hashes(n)); err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		forged := tlog.Checkpoint{Size: from, Root: tlog.LeafHash([]byte("x"))}
		if err := tlog.VerifyConsistency(forged, cp, tr.Hashes(n)); !errors.Is(err, tlog.ErrInconsistent) {
			t.Fatalf("from %d: forged history accepted: %v", from, err)
		}
	}
}

func TestSignerRefusesBadOrigin(t *testing.T) {
	for _, o := range []string{"", "a b", "a+b", "a\nb"} {
		if _, err := tlog.NewSigner(o, key(t)); err == nil {
			t.Errorf("origin %q accepted", o)
		}
	}
}
