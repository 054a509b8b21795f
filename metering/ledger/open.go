package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// KeyLookup finds a registered key by key id: its public key, the node it
// belongs to, and whether it is revoked (at the time of the request: the
// lookup decides what "used past its revocation time" means). It returns an
// error wrapping ErrUnknownKey when no key has that id; any other error is
// an internal failure that Open returns as is (not a Cause).
type KeyLookup func(keyID string) (pub ed25519.PublicKey, node string, revoked bool, err error)

// Open verifies envelope and then decodes its batch (see the package doc for
// the checks and their order). It returns the batch and the exact payload
// bytes (whose Hash is the batch hash).
func Open(ctx context.Context, envelope []byte, keys KeyLookup) (protocol.Batch, []byte, error) {
	env, payload, err := parseEnvelope(envelope)
	if err != nil {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w", err)
	}
	keyID := env.Signatures[0].KeyID
	if keyID == "" {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: signature has no keyid", ErrUnknownKey)
	}
	pub, node, revoked, err := keys(keyID)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return protocol.Batch{}, nil, fmt.Errorf("open batch: key %q: %w", keyID, err)
	case err != nil:
		return protocol.Batch{}, nil, fmt.Errorf("open batch: look up key %q: %w", keyID, err)
	case len(pub) != ed25519.PublicKeySize:
		return protocol.Batch{}, nil, fmt.Errorf("open batch: key %q: lookup returned a %d-byte public key", keyID, len(pub))
	case revoked:
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: key %q of node %q", ErrRevokedKey, keyID, node)
	}

	v, err := signing.NewVerifier(pub)
	if err != nil {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: key %q: %w", keyID, err)
	}
	ev, err := dsse.NewEnvelopeVerifier(v)
	if err != nil {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: build verifier: %w", err)
	}
	if _, verified, err := ev.VerifyAndDecode(ctx, env); err != nil {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: key %q: %v", ErrBadSignature, keyID, err)
	} else if !bytes.Equal(verified, payload) {
		// Cannot happen with standard base64 (checked above); refuse
		// rather than parse bytes other than the verified ones.
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: verified payload differs from decoded payload", ErrMalformed)
	}

	// Only now, with the bytes authenticated, parse them.
	var b protocol.Batch
	if err := strictUnmarshal(payload, &b); errors.Is(err, errDuplicateKey) {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: payload: %v", ErrDuplicateKey, err)
	} else if err != nil {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: payload: %v", ErrMalformed, err)
	}
	if b.KeyID != keyID {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w: payload key_id %q, signature keyid %q", ErrMalformed, b.KeyID, keyID)
	}
	if err := checkBatch(&b, node); err != nil {
		return protocol.Batch{}, nil, fmt.Errorf("open batch: %w", err)
	}
	return b, payload, nil
}

// parseEnvelope decodes the envelope JSON and its base64 fields; every
// failure is ErrMalformed.
func parseEnvelope(data []byte) (*dsse.Envelope, []byte, error) {
	var env dsse.Envelope
	if err := strictUnmarshal(data, &env); errors.Is(err, errDuplicateKey) {
		return nil, nil, fmt.Errorf("%w: envelope: %v", ErrDuplicateKey, err)
	} else if err != nil {
		return nil, nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if env.PayloadType != protocol.PayloadType {
		return nil, nil, fmt.Errorf("%w: payloadType %q, want %q", ErrMalformed, env.PayloadType, protocol.PayloadType)
	}
	if len(env.Signatures) != 1 {
		return nil, nil, fmt.Errorf("%w: %d signatures, want 1", ErrMalformed, len(env.Signatures))
	}
	// Standard base64 only (what Seal writes): dsse also accepts URL
	// encoding, but then two encodings would name one payload.
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: payload base64: %v", ErrMalformed, err)
	}
	if _, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig); err != nil {
		return nil, nil, fmt.Errorf("%w: signature base64: %v", ErrMalformed, err)
	}
	return &env, payload, nil
}

// checkBatch is the structure every batch must have, whoever checks it:
// node is the node the signing key belongs to.
func checkBatch(b *protocol.Batch, node string) error {
	if b.Node != node {
		return fmt.Errorf("%w: batch node %q, key's node %q", ErrNodeMismatch, b.Node, node)
	}
	n := len(b.Records)
	if n < 1 || n > protocol.MaxRecordsPerBatch {
		return fmt.Errorf("%w: %d records, want 1..%d", ErrInvalidRecord, n, protocol.MaxRecordsPerBatch)
	}
	if b.FirstSeq < 1 {
		return fmt.Errorf("%w: first_seq 0 (sequences start at 1)", ErrInvalidRecord)
	}
	if b.LastSeq != b.FirstSeq+uint64(n)-1 || b.LastSeq < b.FirstSeq {
		return fmt.Errorf("%w: last_seq %d, want first_seq %d + %d records - 1", ErrInvalidRecord, b.LastSeq, b.FirstSeq, n)
	}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Node != node {
			return fmt.Errorf("%w: record %d (seq %d) has node %q, key's node %q", ErrNodeMismatch, i, r.Seq, r.Node, node)
		}
		if want := b.FirstSeq + uint64(i); r.Seq != want {
			return fmt.Errorf("%w: record %d has seq %d, want %d", ErrInvalidRecord, i, r.Seq, want)
		}
		if err := checkRecord(r); err != nil {
			return fmt.Errorf("record seq %d: %w", r.Seq, err)
		}
	}
	return nil
}
