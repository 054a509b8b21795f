package testutil

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// NewKey is a fresh Ed25519 signing key, as a node's.
func NewKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// NewPublicKey is the public half of a fresh key, for a node the test
// registers but never signs as.
func NewPublicKey(t testing.TB) ed25519.PublicKey {
	t.Helper()
	return NewKey(t).Public().(ed25519.PublicKey)
}
