package tlog

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// tree is a test-only in-memory tree: every node kept, proofs by Rehash.
type tree struct {
	rng   *compact.Range
	nodes map[compact.NodeID][]byte
}

func newTree() *tree {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	return &tree{rng: f.NewEmptyRange(0), nodes: map[compact.NodeID][]byte{}}
}

func (t *tree) visit(id compact.NodeID, h []byte) { t.nodes[id] = h }

func (t *tree) add(data []byte) {
	h := LeafHash(data)
	t.nodes[compact.NewNodeID(0, t.rng.End())] = h
	if err := t.rng.Append(h, t.visit); err != nil {
		panic(err)
	}
}

func (t *tree) root() []byte {
	r, err := t.rng.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return r
}

func (t *tree) fetch(n proof.Nodes) [][]byte {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		hs[i] = t.nodes[id]
	}
	out, err := n.Rehash(hs, HashChildren)
	if err != nil {
		panic(err)
	}
	return out
}

func key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckpointRoundTripAndSplitView(t *testing.T) {
	s, err := NewSigner("authority.example/log", key(t))
	if err != nil {
		t.Fatal(err)
	}
	// sumdb/note itself reads the key we derived.
	nv, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree()
	for i := 0; i < 5; i++ {
		tr.add(BatchLeaf("node-a", uint64(i*10+1), uint64(i*10+10), []byte{byte(i)}))
	}
	signed, err := s.Sign(5, tr.root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(nv)); err != nil {
		t.Fatalf("sumdb/note refuses our checkpoint: %v", err)
	}
	v, err := NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.Open(signed)
	if err != nil || cp.Size != 5 || v.Origin() != "authority.example/log" {
		t.Fatalf("Open = %+v, %v", cp, err)
	}
	again, _ := s.Sign(5, tr.root())
	if string(again) != string(signed) {
		t.Fatal("one size and root signed twice gave two notes")
	}
	other, _ := s.Sign(5, LeafHash([]byte("forged")))
	ocp, err := v.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(cp, ocp, nil); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("split view not detected: %v", err)
	}
	s2, _ := NewSigner("authority.example/log", key(t))
	foreign, _ := s2.Sign(5, tr.root())
	if _, err := v.Open(foreign); !errors.Is(err, ErrSignature) {
		t.Fatalf("another key's checkpoint opened: %v", err)
	}
}

func TestProofs(t *testing.T) {
	tr := newTree()
	var leaves [][]byte
	var roots [][]byte
	for i := 0; i < 37; i++ {
		d := BatchLeaf("n", uint64(i), uint64(i), []byte{byte(i)})
		leaves = append(leaves, d)
		tr.add(d)
		roots = append(roots, tr.root())
	}
	size := uint64(len(leaves))
	cp := Checkpoint{Size: size, Root: tr.root()}
	for i, d := range leaves {
		n, err := proof.Inclusion(uint64(i), size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyInclusion(cp, uint64(i), d, tr.fetch(n)); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if err := VerifyInclusion(cp, uint64(i), []byte("other"), tr.fetch(n)); !errors.Is(err, ErrInclusion) {
			t.Fatalf("leaf %d: wrong data verified: %v", i, err)
		}
	}
	for from := uint64(1); from < size; from += 5 {
		n, err := proof.Consistency(from, size)
		if err != nil {
			t.Fatal(err)
		}
		old := Checkpoint{Size: from, Root: roots[from-1]}
		if err := VerifyConsistency(old, cp, tr.fetch(n)); err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		forged := Checkpoint{Size: from, Root: LeafHash([]byte("x"))}
		if err := VerifyConsistency(forged, cp, tr.fetch(n)); !errors.Is(err, ErrInconsistent) {
			t.Fatalf("from %d: forged history accepted: %v", from, err)
		}
	}
}

func TestSignerRefusesBadOrigin(t *testing.T) {
	for _, o := range []string{"", "a b", "a+b", "a\nb"} {
		if _, err := NewSigner(o, key(t)); err == nil {
			t.Errorf("origin %q accepted", o)
		}
	}
}
