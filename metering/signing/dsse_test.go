package signing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

func TestSignerWithDSSE(t *testing.T) {
	ctx := context.Background()
	priv := testutil.NewKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	s, err := signing.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := s.KeyID(); id != signing.KeyID(pub) {
		t.Fatalf("KeyID %s, want %s", id, signing.KeyID(pub))
	}
	es := testutil.EnvelopeSigner(t, priv)
	env, err := es.SignPayload(ctx, "text/plain", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	otherPub := testutil.NewPublicKey(t)
	tests := []struct {
		name   string
		pub    ed25519.PublicKey
		mod    func(*dsse.Envelope)
		wantOK bool
	}{
		{"own key", pub, func(*dsse.Envelope) {}, true},
		{"other key", otherPub, func(*dsse.Envelope) {}, false},
		{"changed payload", pub, func(e *dsse.Envelope) { e.Payload = "aGVsbG8h" }, false},
		{"changed type", pub, func(e *dsse.Envelope) { e.PayloadType = "text/html" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := testutil.EnvelopeVerifier(t, tc.pub)
			e := *env
			e.Signatures = append([]dsse.Signature(nil), env.Signatures...)
			tc.mod(&e)
			if _, err := ev.Verify(ctx, &e); (err == nil) != tc.wantOK {
				t.Fatalf("verify err = %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
}

func TestAdaptersRefuseWrongKeySizes(t *testing.T) {
	if _, err := signing.NewSigner(make([]byte, 10)); err == nil {
		t.Fatal("signer from a 10-byte key")
	}
	if _, err := signing.NewVerifier(make([]byte, 10)); err == nil {
		t.Fatal("verifier from a 10-byte key")
	}
}

// The ledger has its own copy of the adapter (import direction); both must
// produce and accept the same envelopes.
func TestInteropWithLedger(t *testing.T) {
	ctx := context.Background()
	priv := testutil.NewKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	lookup := func(id string) (ed25519.PublicKey, string, bool, error) {
		if id != signing.KeyID(pub) {
			return nil, "", false, fmt.Errorf("%s: %w", id, ledger.ErrUnknownKey)
		}
		return pub, "node-01", false, nil
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := protocol.Record{Node: "node-01", Provider: "p", Seq: 1, Kind: protocol.KindIdle, WindowStart: start, WindowEnd: start.Add(time.Minute), GPUMillis: 60000,
		GPUUUID: "GPU-00000000-0000-4000-8000-000000000000", ParentUUID: "GPU-00000000-0000-4000-8000-000000000000", SliceNum: 1, SliceDen: 1,
		UtilizationPercent: -1, EnergyMillijoules: -1}
	rec.ID = rec.ComputeID()

	t.Run("signing envelope opens with ledger.Open", func(t *testing.T) {
		payload, err := json.Marshal(protocol.Batch{Node: "node-01", KeyID: signing.KeyID(pub), FirstSeq: 1, LastSeq: 1, Records: []protocol.Record{rec}})
		if err != nil {
			t.Fatal(err)
		}
		env, err := testutil.EnvelopeSigner(t, priv).SignPayload(ctx, protocol.PayloadType, payload)
		if err != nil {
			t.Fatal(err)
		}
		envJSON, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ledger.Open(ctx, envJSON, lookup); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("sealer envelope verifies with signing.Verifier", func(t *testing.T) {
		sealer, err := ledger.NewSealer("node-01", priv, func() time.Time { return start })
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := sealer.Seal(ctx, 1, "", []protocol.Record{rec})
		if err != nil {
			t.Fatal(err)
		}
		var env dsse.Envelope
		if err := json.Unmarshal(sealed.Envelope, &env); err != nil {
			t.Fatal(err)
		}
		ev := testutil.EnvelopeVerifier(t, pub)
		if _, err := ev.Verify(ctx, &env); err != nil {
			t.Fatal(err)
		}
		env.Payload = env.Payload[:len(env.Payload)-4]
		if _, err := ev.Verify(ctx, &env); err == nil {
			t.Fatal("truncated payload verified")
		}
	})
	t.Run("verify error", func(t *testing.T) {
		v, err := signing.NewVerifier(pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(ctx, []byte("x"), make([]byte, 64)); !errors.Is(err, signing.ErrBadSignature) {
			t.Fatalf("err = %v, want ErrBadSignature", err)
		}
	})
}
