package ledger

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
)

// ed25519DSSE adapts an Ed25519 key to dsse.Signer / dsse.Verifier.
// metering/signing exports the same adapter; it is repeated here because
// signing imports this package for KeyID (the protocol's one definition),
// and a test there checks that the two interoperate.
type ed25519DSSE struct {
	priv  ed25519.PrivateKey // nil for a verifier
	pub   ed25519.PublicKey
	keyID string
}

var errSignatureInvalid = errors.New("ed25519 signature does not verify")

func (k ed25519DSSE) Sign(_ context.Context, data []byte) ([]byte, error) {
	if k.priv == nil {
		return nil, errors.New("ed25519 verifier cannot sign")
	}
	return ed25519.Sign(k.priv, data), nil
}

func (k ed25519DSSE) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(k.pub, data, sig) {
		return errSignatureInvalid
	}
	return nil
}

func (k ed25519DSSE) KeyID() (string, error) { return k.keyID, nil }

func (k ed25519DSSE) Public() crypto.PublicKey { return k.pub }
