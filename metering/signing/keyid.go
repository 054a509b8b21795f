package signing

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
)

// KeyID names a public key on the wire (docs/protocol.md): "ed25519:" and
// the first 16 hex characters of sha256 of the raw 32-byte key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}
