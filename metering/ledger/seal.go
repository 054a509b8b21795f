package ledger

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// Sealed is a committed-to-be batch: its sequence range, its hash (the next
// batch's prev_hash) and the envelope JSON to store and send as is.
type Sealed struct {
	FirstSeq uint64
	LastSeq  uint64
	Hash     string
	Envelope []byte // JSON of a dsse.Envelope
}

// Sealer signs batches for one node with one key. It is safe for
// concurrent use (it holds no mutable state).
type Sealer struct {
	node   string
	keyID  string
	signer *dsse.EnvelopeSigner
	clock  func() time.Time
	// instance is stamped into every batch (protocol.Batch.Instance).
	instance string
}

// NewSealer builds a Sealer for node with key; clock stamps Batch.Created.
func NewSealer(node string, key ed25519.PrivateKey, clock func() time.Time) (*Sealer, error) {
	if node == "" {
		return nil, fmt.Errorf("new sealer: empty node id")
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("new sealer for node %s: private key has %d bytes, want %d", node, len(key), ed25519.PrivateKeySize)
	}
	if clock == nil {
		return nil, fmt.Errorf("new sealer for node %s: nil clock", node)
	}
	k, err := signing.NewSigner(key)
	if err != nil {
		return nil, fmt.Errorf("new sealer for node %s: %w", node, err)
	}
	es, err := dsse.NewEnvelopeSigner(k)
	if err != nil {
		return nil, fmt.Errorf("new sealer for node %s: %w", node, err)
	}
	keyID, _ := k.KeyID()
	return &Sealer{node: node, keyID: keyID, signer: es, clock: clock}, nil
}

// WithInstance returns a copy of s that stamps instance (the agent's
// instance id: a copy of the node on another disk image gets another) into
// every batch it seals. An instance id is 1 to 64 characters of [0-9a-z-].
func (s *Sealer) WithInstance(instance string) (*Sealer, error) {
	if err := checkInstance(instance); err != nil {
		return nil, fmt.Errorf("sealer for node %s: %w", s.node, err)
	}
	c := *s
	c.instance = instance
	return &c, nil
}

// Instance is the instance id the Sealer stamps ("" when none).
func (s *Sealer) Instance() string { return s.instance }

func checkInstance(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("instance id %q: want 1 to 64 characters", id)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return fmt.Errorf("instance id %q: only 0-9, a-z and '-' allowed", id)
		}
	}
	return nil
}

// Node is the node the Sealer signs for.
func (s *Sealer) Node() string { return s.node }

// KeyID is the key id its signatures carry.
func (s *Sealer) KeyID() string { return s.keyID }

// Seal numbers recs from firstSeq (on a copy: the caller's slice is not
// changed), signs the batch and returns it. prevHash is the hash of the
// batch ending at firstSeq-1 ("" for firstSeq 1).
func (s *Sealer) Seal(ctx context.Context, firstSeq uint64, prevHash string, recs []protocol.Record) (Sealed, error) {
	if err := ctx.Err(); err != nil {
		return Sealed{}, fmt.Errorf("seal batch at seq %d: %w", firstSeq, err)
	}
	b := protocol.Batch{
		Node:     s.node,
		KeyID:    s.keyID,
		FirstSeq: firstSeq,
		PrevHash: prevHash,
		Created:  s.clock().UTC().Truncate(time.Millisecond),
		Instance: s.instance,
		Records:  make([]protocol.Record, len(recs)),
	}
	copy(b.Records, recs)
	for i := range b.Records {
		b.Records[i].Seq = firstSeq + uint64(i)
	}
	if len(recs) > 0 {
		b.LastSeq = firstSeq + uint64(len(recs)) - 1
	}
	if firstSeq == 1 && prevHash != "" {
		return Sealed{}, fmt.Errorf("seal batch at seq 1: prev_hash must be empty, got %q", prevHash)
	}
	// Refuse here what the authority would refuse: a sealed batch gets a
	// sequence number for good, and a bad one would only be dead-lettered.
	if err := checkBatch(&b, s.node); err != nil {
		return Sealed{}, fmt.Errorf("seal batch at seq %d: %w", firstSeq, err)
	}
	payload, err := json.Marshal(&b)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal batch at seq %d: marshal payload: %w", firstSeq, err)
	}
	env, err := s.signer.SignPayload(ctx, protocol.PayloadType, payload)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal batch at seq %d: sign: %w", firstSeq, err)
	}
	envJSON, err := json.Marshal(env)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal batch at seq %d: marshal envelope: %w", firstSeq, err)
	}
	return Sealed{FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Hash: protocol.Hash(payload), Envelope: envJSON}, nil
}
