package testutil

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/gpumeter/gpumeter/metering/signing"
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

// NodeState makes an agent's state directory, dir/state (mode 0700), with
// a new node key in it (node.key, as the agent reads it), and returns the
// directory and the key's public half to register.
func NodeState(t testing.TB, dir string) (string, ed25519.PublicKey) {
	t.Helper()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	pub, err := signing.GenerateKeyFile(filepath.Join(state, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	return state, pub
}
