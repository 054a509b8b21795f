// Package tlogtest is an in-memory verifiable-log tree for tests that check
// tlog's proofs or play an authority's log: a real RFC 6962 tree with every
// node kept, so that any inclusion or consistency proof is rehashed from
// them. It keeps everything in memory and panics on misuse: tests only.
package tlogtest

import (
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/gpumeter/gpumeter/internal/tlog"
)

// Tree is an in-memory tree of tlog leaves.
type Tree struct {
	rng   *compact.Range
	nodes map[compact.NodeID][]byte
}

// NewTree is an empty tree.
func NewTree() *Tree {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	return &Tree{rng: f.NewEmptyRange(0), nodes: map[compact.NodeID][]byte{}}
}

// Append adds a leaf (its data, hashed as tlog.LeafHash) and returns its
// index.
func (t *Tree) Append(data []byte) uint64 {
	i := t.rng.End()
	h := tlog.LeafHash(data)
	t.nodes[compact.NewNodeID(0, i)] = h
	if err := t.rng.Append(h, func(id compact.NodeID, h []byte) { t.nodes[id] = h }); err != nil {
		panic(err)
	}
	return i
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.rng.End() }

// Root is the tree's root hash.
func (t *Tree) Root() []byte {
	r, err := t.rng.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return r
}

// Hashes are the hashes of a proof's nodes (proof.Inclusion,
// proof.Consistency), rehashed as the proof wants them.
func (t *Tree) Hashes(n proof.Nodes) [][]byte {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		hs[i] = t.nodes[id]
	}
	out, err := n.Rehash(hs, tlog.HashChildren)
	if err != nil {
		panic(err)
	}
	return out
}
