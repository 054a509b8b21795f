package testutil

import (
	"crypto/ed25519"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/metering/signing"
)

// EnvelopeSigner is a DSSE envelope signer over signing's Ed25519 adapter
// for key, for tests that sign envelopes by hand.
func EnvelopeSigner(t testing.TB, key ed25519.PrivateKey) *dsse.EnvelopeSigner {
	t.Helper()
	s, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	es, err := dsse.NewEnvelopeSigner(s)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// EnvelopeVerifier is a DSSE envelope verifier over signing's Ed25519
// adapter for pub.
func EnvelopeVerifier(t testing.TB, pub ed25519.PublicKey) *dsse.EnvelopeVerifier {
	t.Helper()
	v, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dsse.NewEnvelopeVerifier(v)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
