package signing

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// ErrBadSignature is returned by Verify when a signature does not verify.
var ErrBadSignature = errors.New("ed25519 signature does not verify")

// Signer signs DSSE pre-authentication encodings with an Ed25519 key, for
// dsse.NewEnvelopeSigner. It also verifies (dsse.SignerVerifier).
type Signer struct {
	priv ed25519.PrivateKey
	Verifier
}

// Verifier checks Ed25519 signatures for dsse.NewEnvelopeVerifier.
type Verifier struct {
	pub   ed25519.PublicKey
	keyID string
}

var (
	_ dsse.SignerVerifier = (*Signer)(nil)
	_ dsse.Verifier       = (*Verifier)(nil)
)

// NewSigner wraps priv. Its KeyID is KeyID of the public key.
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("new signer: %w (got %d bytes)", errNoKey, len(priv))
	}
	pub := priv.Public().(ed25519.PublicKey)
	v, err := NewVerifier(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{priv: priv, Verifier: *v}, nil
}

// NewVerifier wraps pub. Its KeyID is KeyID(pub), so an envelope
// verifier only tries signatures made with this key.
func NewVerifier(pub ed25519.PublicKey) (*Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("new verifier: %w (got %d bytes)", errNoKey, len(pub))
	}
	return &Verifier{pub: pub, keyID: KeyID(pub)}, nil
}

// Sign signs data (the DSSE PAE) as is: Ed25519 hashes internally.
func (s *Signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, data), nil
}

// Verify checks sig over data.
func (v *Verifier) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(v.pub, data, sig) {
		return ErrBadSignature
	}
	return nil
}

// KeyID is KeyID of the public key.
func (v *Verifier) KeyID() (string, error) { return v.keyID, nil }

// Public is the ed25519.PublicKey.
func (v *Verifier) Public() crypto.PublicKey { return v.pub }
