// Package tlog is the verifiable log's shared vocabulary: the leaves the
// authority appends, the checkpoints it signs (C2SP tlog-checkpoint, as
// signed notes) and the proof checks that agents, tenants and auditors run.
//
// Hashing is RFC 6962 (github.com/transparency-dev/merkle); checkpoints are
// golang.org/x/mod/sumdb/note notes parsed by transparency-dev/formats, so
// that witnesses and verifiers written for other logs read ours. Nothing here
// touches a database or the network: the authority's store keeps the tree,
// the agent's spool keeps the checkpoints it has seen.
package tlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Leaf kinds: the first line of every leaf's data.
const (
	// KindBatch is an accepted batch: the hash of the exact envelope bytes
	// the authority verified, with the node and sequence range it covers.
	KindBatch = "gpumeter-batch/v1"
	// KindVoucher is a voucher movement (grant, charge, hold, release,
	// expiry); its body is defined by the authority's billing store.
	KindVoucher = "gpumeter-voucher/v1"
)

// BatchLeaf is the leaf data the authority appends for an accepted batch.
// An agent computes the same bytes from the envelope it sent, so it can
// check the inclusion proof without trusting anything the authority says
// about the batch.
func BatchLeaf(node string, firstSeq, lastSeq uint64, envelope []byte) []byte {
	sum := sha256.Sum256(envelope)
	return fmt.Appendf(nil, "%s\n%s\n%d\n%d\n%x\n", KindBatch, node, firstSeq, lastSeq, sum)
}

// LeafHash is the RFC 6962 hash of a leaf's data.
func LeafHash(data []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(data) }

// HashChildren is the RFC 6962 hash of an interior node.
func HashChildren(l, r []byte) []byte { return rfc6962.DefaultHasher.HashChildren(l, r) }

// EmptyRoot is the root of the empty tree.
func EmptyRoot() []byte { return rfc6962.DefaultHasher.EmptyRoot() }

// Checkpoint is a checkpoint whose signature has been verified.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Note is the signed note exactly as served.
	Note []byte
}

// Errors a verifier names.
var (
	// ErrSignature: the note is not signed by the log's key, or its body
	// is not a checkpoint of the expected origin.
	ErrSignature = errors.New("checkpoint not signed by the log's key")
	// ErrInclusion: the leaf is not in the checkpoint's tree.
	ErrInclusion = errors.New("inclusion proof does not verify")
	// ErrInconsistent: the newer checkpoint's tree does not extend the
	// older one: the history was rewritten or forked.
	ErrInconsistent = errors.New("checkpoints are not consistent: history rewritten or forked")
)

// Signer signs checkpoints with the log's Ed25519 key under name (the key
// name in the note's signature line; by convention the log's origin).
type Signer struct {
	origin string
	signer note.Signer
	vkey   string
}

// NewSigner makes a checkpoint signer for origin from an Ed25519 key.
func NewSigner(origin string, key ed25519.PrivateKey) (*Signer, error) {
	if origin == "" || strings.ContainsAny(origin, "\n+ ") {
		return nil, fmt.Errorf("log origin %q: must be non-empty, with no space, '+' or newline", origin)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("log key for %q: %w", origin, err)
	}
	// A note private key is PRIVATE+KEY+<name>+<hash>+base64(alg||seed);
	// the verifier key already carries name and hash.
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("log key for %q: %w", origin, err)
	}
	return &Signer{origin: origin, signer: s, vkey: vkey}, nil
}

// Origin is the log's origin line.
func (s *Signer) Origin() string { return s.origin }

// VerifierKey is the public key in note verifier form
// (<name>+<hash>+<base64>), the string verifiers are configured with.
func (s *Signer) VerifierKey() string { return s.vkey }

// Sign returns the signed checkpoint note for a tree of size with root.
// Ed25519 signatures are deterministic: one size and root always give the
// same bytes, so two different notes of one size are proof of a split view.
func (s *Signer) Sign(size uint64, root []byte) ([]byte, error) {
	text := log.Checkpoint{Origin: s.origin, Size: size, Hash: root}.Marshal()
	return note.Sign(&note.Note{Text: string(text)}, s.signer)
}

// Verifier checks checkpoints of one log.
type Verifier struct {
	origin string
	v      note.Verifier
}

// NewVerifier makes a verifier from the log's verifier key; the origin is
// the key's name.
func NewVerifier(vkey string) (*Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("log verifier key %q: %w", vkey, err)
	}
	return &Verifier{origin: v.Name(), v: v}, nil
}

// Origin is the log's origin (the verifier key's name).
func (v *Verifier) Origin() string { return v.origin }

// Open verifies a signed checkpoint note and parses it.
func (v *Verifier) Open(signed []byte) (Checkpoint, error) {
	cp, _, _, err := log.ParseCheckpoint(signed, v.origin, v.v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Note: append([]byte(nil), signed...)}, nil
}

// VerifyInclusion checks that the leaf with data is at index in cp's tree.
func VerifyInclusion(cp Checkpoint, index uint64, data []byte, hashes [][]byte) error {
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, LeafHash(data), hashes, cp.Root); err != nil {
		return fmt.Errorf("%w: leaf %d in tree of size %d: %v", ErrInclusion, index, cp.Size, err)
	}
	return nil
}

// VerifyConsistency checks that newer's tree extends older's. Two
// checkpoints of one size must have one root.
func VerifyConsistency(older, newer Checkpoint, hashes [][]byte) error {
	if older.Size > newer.Size {
		return VerifyConsistency(newer, older, hashes)
	}
	if older.Size == newer.Size {
		if !bytes.Equal(older.Root, newer.Root) {
			return fmt.Errorf("%w: two roots for size %d", ErrInconsistent, older.Size)
		}
		return nil
	}
	if older.Size == 0 {
		return nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, hashes, older.Root, newer.Root); err != nil {
		return fmt.Errorf("%w: from size %d to %d: %v", ErrInconsistent, older.Size, newer.Size, err)
	}
	return nil
}
