package ledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

type fixture struct {
	node   string
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
	sealer *ledger.Sealer
	keys   map[string]keyEntry
}

type keyEntry struct {
	pub     ed25519.PublicKey
	node    string
	revoked bool
}

func newFixture(tb testing.TB, node string) *fixture {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ledger.NewSealer(node, priv, func() time.Time { return t0.Add(90 * time.Second) })
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{node: node, priv: priv, pub: pub, sealer: s, keys: map[string]keyEntry{}}
	f.keys[signing.KeyID(pub)] = keyEntry{pub: pub, node: node}
	return f
}

func (f *fixture) lookup(keyID string) (ed25519.PublicKey, string, bool, error) {
	k, ok := f.keys[keyID]
	if !ok {
		return nil, "", false, fmt.Errorf("key %s: %w", keyID, ledger.ErrUnknownKey)
	}
	return k.pub, k.node, k.revoked, nil
}

// records makes n valid records of node, one per minute window.
func records(node string, n int) []protocol.Record {
	out := make([]protocol.Record, n)
	for i := range out {
		r := protocol.Record{
			Node: node, Provider: "p", Kind: protocol.KindUsage, Tenant: fmt.Sprintf("t%d", i%3),
			WindowStart: t0.Add(time.Duration(i) * time.Minute), WindowEnd: t0.Add(time.Duration(i+1) * time.Minute),
			GPUUUID: "GPU-00000000-0000-4000-8000-000000000000", ParentUUID: "GPU-00000000-0000-4000-8000-000000000000", Model: "H100", SliceNum: 1, SliceDen: 1,
			GPUMillis: 60000, UtilizationPercent: 50, EnergyMillijoules: 1000, Attribution: "cgroup",
		}
		r.ID = r.ComputeID()
		out[i] = r
	}
	return out
}

func TestSealOpenRoundTrip(t *testing.T) {
	f := newFixture(t, "node-01")
	recs := records("node-01", 5)
	s, err := f.sealer.Seal(context.Background(), 101, "abc", recs)
	if err != nil {
		t.Fatal(err)
	}
	if s.FirstSeq != 101 || s.LastSeq != 105 {
		t.Fatalf("sealed range %d..%d, want 101..105", s.FirstSeq, s.LastSeq)
	}
	for i, r := range recs {
		if r.Seq != 0 {
			t.Fatalf("caller's record %d was mutated: seq %d", i, r.Seq)
		}
	}
	b, payload, err := ledger.Open(context.Background(), s.Envelope, f.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := protocol.Hash(payload); got != s.Hash {
		t.Fatalf("hash of opened payload %s, sealed %s", got, s.Hash)
	}
	if b.Node != "node-01" || b.KeyID != signing.KeyID(f.pub) || b.PrevHash != "abc" || !b.Created.Equal(t0.Add(90*time.Second)) {
		t.Fatalf("batch header %+v", b)
	}
	for i, r := range b.Records {
		want := recs[i]
		want.Seq = 101 + uint64(i)
		if r.Seq != want.Seq || r.ID != want.ID || r.GPUMillis != want.GPUMillis || !r.WindowStart.Equal(want.WindowStart) {
			t.Fatalf("record %d: got %+v want %+v", i, r, want)
		}
	}
}

func TestSealRefuses(t *testing.T) {
	f := newFixture(t, "node-01")
	other := records("node-02", 1)
	bad := records("node-01", 1)
	bad[0].GPUMillis = -1
	tests := []struct {
		name     string
		first    uint64
		prev     string
		recs     []protocol.Record
		wantCaus ledger.Cause
	}{
		{"no records", 1, "", nil, ledger.ErrInvalidRecord},
		{"seq zero", 0, "", records("node-01", 1), ledger.ErrInvalidRecord},
		{"other node", 1, "", other, ledger.ErrNodeMismatch},
		{"negative ms", 1, "", bad, ledger.ErrInvalidRecord},
		{"too many", 1, "", records("node-01", protocol.MaxRecordsPerBatch+1), ledger.ErrInvalidRecord},
		{"prev hash at seq 1", 1, "abc", records("node-01", 1), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.sealer.Seal(context.Background(), tc.first, tc.prev, tc.recs)
			if err == nil {
				t.Fatal("sealed, want an error")
			}
			if tc.wantCaus != "" && !errors.Is(err, tc.wantCaus) {
				t.Fatalf("err %v, want cause %s", err, tc.wantCaus)
			}
		})
	}
}

// envelope helpers for building mutated envelopes.
func decodeEnv(t testing.TB, b []byte) dsse.Envelope {
	t.Helper()
	var e dsse.Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func encodeEnv(t testing.TB, e dsse.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealOpen seals n records of f's node with s, from seq 1, and opens them:
// the envelope, and the batch and payload Open returns.
func (f *fixture) sealOpen(t testing.TB, s *ledger.Sealer, n int) ([]byte, protocol.Batch, []byte) {
	t.Helper()
	sealed, err := s.Seal(context.Background(), 1, "", records(f.node, n))
	if err != nil {
		t.Fatal(err)
	}
	b, payload, err := ledger.Open(context.Background(), sealed.Envelope, f.lookup)
	if err != nil {
		t.Fatal(err)
	}
	return sealed.Envelope, b, payload
}

// signRaw signs an arbitrary payload with f's key, so tests can reach the
// checks after verification.
func (f *fixture) signRaw(t testing.TB, payloadType string, payload []byte) []byte {
	t.Helper()
	pub := f.priv.Public().(ed25519.PublicKey)
	pae := dsse.PAE(payloadType, payload)
	e := dsse.Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{{KeyID: signing.KeyID(pub), Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(f.priv, pae))}},
	}
	return encodeEnv(t, e)
}

func TestOpenRefuses(t *testing.T) {
	f := newFixture(t, "node-01")
	ctx := context.Background()
	good, _, payload := f.sealOpen(t, f.sealer, 3)
	var batch protocol.Batch
	if err := json.Unmarshal(payload, &batch); err != nil {
		t.Fatal(err)
	}
	remarshal := func(mod func(*protocol.Batch)) []byte {
		b := batch
		b.Records = append([]protocol.Record(nil), batch.Records...)
		mod(&b)
		p, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return f.signRaw(t, protocol.PayloadType, p)
	}
	mutate := func(mod func(*dsse.Envelope)) []byte {
		e := decodeEnv(t, good)
		mod(&e)
		return encodeEnv(t, e)
	}
	flip := func(s string, i int) string {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		raw[i%len(raw)] ^= 0x01
		return base64.StdEncoding.EncodeToString(raw)
	}

	stranger := newFixture(t, "node-01")
	strangerEnv, err := stranger.sealer.Seal(ctx, 1, "", records("node-01", 1))
	if err != nil {
		t.Fatal(err)
	}
	intruder := newFixture(t, "node-02") // registered, but for another node
	f.keys[signing.KeyID(intruder.pub)] = keyEntry{pub: intruder.pub, node: "node-02"}
	intrEnv := intruder.signRaw(t, protocol.PayloadType, func() []byte {
		b := batch
		b.KeyID = signing.KeyID(intruder.pub)
		p, _ := json.Marshal(b)
		return p
	}())

	tests := []struct {
		name string
		env  []byte
		keys ledger.KeyLookup
		want ledger.Cause
	}{
		{"not json", []byte("{not json"), nil, ledger.ErrMalformed},
		{"trailing data", append(append([]byte{}, good...), []byte(" {}")...), nil, ledger.ErrMalformed},
		{"unknown envelope field", []byte(`{"payloadType":"x","payload":"","signatures":[],"extra":1}`), nil, ledger.ErrMalformed},
		{"wrong payload type", mutate(func(e *dsse.Envelope) { e.PayloadType = "application/json" }), nil, ledger.ErrMalformed},
		{"no signature", mutate(func(e *dsse.Envelope) { e.Signatures = nil }), nil, ledger.ErrMalformed},
		{"two signatures", mutate(func(e *dsse.Envelope) { e.Signatures = append(e.Signatures, e.Signatures[0]) }), nil, ledger.ErrMalformed},
		{"bad payload base64", mutate(func(e *dsse.Envelope) { e.Payload = "!!" + e.Payload }), nil, ledger.ErrMalformed},
		{"url base64 payload", mutate(func(e *dsse.Envelope) { e.Payload = "-_" + e.Payload[2:] }), nil, ledger.ErrMalformed},
		{"bad signature base64", mutate(func(e *dsse.Envelope) { e.Signatures[0].Sig = "%%%" }), nil, ledger.ErrMalformed},
		{"unknown key", strangerEnv.Envelope, nil, ledger.ErrUnknownKey},
		{"empty keyid", mutate(func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" }), nil, ledger.ErrUnknownKey},
		{"revoked key", good, func(id string) (ed25519.PublicKey, string, bool, error) {
			return f.pub, "node-01", true, nil
		}, ledger.ErrRevokedKey},
		{"flipped payload byte", mutate(func(e *dsse.Envelope) { e.Payload = flip(e.Payload, 40) }), nil, ledger.ErrBadSignature},
		{"flipped last payload byte", mutate(func(e *dsse.Envelope) { e.Payload = flip(e.Payload, -1+len(payload)) }), nil, ledger.ErrBadSignature},
		{"flipped signature byte", mutate(func(e *dsse.Envelope) { e.Signatures[0].Sig = flip(e.Signatures[0].Sig, 7) }), nil, ledger.ErrBadSignature},
		{"payload type changed after signing", func() []byte {
			e := decodeEnv(t, f.signRaw(t, "application/json", payload))
			e.PayloadType = protocol.PayloadType
			return encodeEnv(t, e)
		}(), nil, ledger.ErrBadSignature},
		{"signature of another key under our keyid", mutate(func(e *dsse.Envelope) {
			e.Signatures[0].Sig = decodeEnv(t, strangerEnv.Envelope).Signatures[0].Sig
		}), nil, ledger.ErrBadSignature},
		{"signed garbage payload", f.signRaw(t, protocol.PayloadType, []byte("[1,2")), nil, ledger.ErrMalformed},
		{"signed payload with unknown field", f.signRaw(t, protocol.PayloadType,
			append(payload[:len(payload)-1:len(payload)-1], []byte(`,"extra":true}`)...)), nil, ledger.ErrMalformed},
		{"payload key_id not the signer's", remarshal(func(b *protocol.Batch) { b.KeyID = "ed25519:0000000000000000" }), nil, ledger.ErrMalformed},
		{"node mismatch", intrEnv, nil, ledger.ErrNodeMismatch},
		{"record of another node", remarshal(func(b *protocol.Batch) { b.Records[1].Node = "node-02" }), nil, ledger.ErrNodeMismatch},
		{"last_seq wrong", remarshal(func(b *protocol.Batch) { b.LastSeq = 7 }), nil, ledger.ErrInvalidRecord},
		{"record seq hole", remarshal(func(b *protocol.Batch) { b.Records[2].Seq = 4 }), nil, ledger.ErrInvalidRecord},
		{"no records", remarshal(func(b *protocol.Batch) { b.Records = nil; b.LastSeq = 0 }), nil, ledger.ErrInvalidRecord},
		{"usage without tenant", remarshal(func(b *protocol.Batch) { b.Records[0].Tenant = "" }), nil, ledger.ErrKindFields},
		{"usage with a gap reason", remarshal(func(b *protocol.Batch) { b.Records[0].GapReason = protocol.GapAgentDown }), nil, ledger.ErrKindFields},
		{"idle with a tenant", remarshal(func(b *protocol.Batch) { b.Records[0].Kind = protocol.KindIdle; b.Records[0].Attribution = "" }), nil, ledger.ErrKindFields},
		{"gap with a tenant", remarshal(func(b *protocol.Batch) {
			b.Records[0].Kind, b.Records[0].GapReason, b.Records[0].Attribution = protocol.KindGap, protocol.GapNoSample, ""
		}), nil, ledger.ErrKindFields},
		{"gap without a known reason", remarshal(func(b *protocol.Batch) {
			b.Records[0].Kind, b.Records[0].Tenant, b.Records[0].Attribution, b.Records[0].GapReason = protocol.KindGap, "", "", "why not"
		}), nil, ledger.ErrKindFields},
		{"usage carrying an inventory", remarshal(func(b *protocol.Batch) { b.Records[0].Inventory = &protocol.Inventory{} }), nil, ledger.ErrKindFields},
		{"utilization above 100", remarshal(func(b *protocol.Batch) { b.Records[0].UtilizationPercent = 101 }), nil, ledger.ErrInvalidValue},
		{"utilization below -1", remarshal(func(b *protocol.Batch) { b.Records[0].UtilizationPercent = -2 }), nil, ledger.ErrInvalidValue},
		{"negative energy", remarshal(func(b *protocol.Batch) { b.Records[0].EnergyMillijoules = -5 }), nil, ledger.ErrInvalidValue},
		{"slice above one", remarshal(func(b *protocol.Batch) { b.Records[0].SliceNum, b.Records[0].SliceDen = 8, 7 }), nil, ledger.ErrSliceMismatch},
		{"zero slice denominator", remarshal(func(b *protocol.Batch) { b.Records[0].SliceDen = 0 }), nil, ledger.ErrSliceMismatch},
		{"whole GPU with a partial slice", remarshal(func(b *protocol.Batch) { b.Records[0].SliceNum, b.Records[0].SliceDen = 1, 7 }), nil, ledger.ErrSliceMismatch},
		{"upper-case UUID", remarshal(func(b *protocol.Batch) {
			b.Records[0].ParentUUID = "GPU-00000000-0000-4000-8000-00000000000A"
			b.Records[0].GPUUUID = b.Records[0].ParentUUID
		}), nil, ledger.ErrInvalidUUID},
		{"UUID with white space", remarshal(func(b *protocol.Batch) {
			b.Records[0].ParentUUID = " " + b.Records[0].ParentUUID
		}), nil, ledger.ErrInvalidUUID},
		{"made-up unit UUID", remarshal(func(b *protocol.Batch) { b.Records[0].GPUUUID = "GPU-1" }), nil, ledger.ErrInvalidUUID},
		{"NUL in a tenant", remarshal(func(b *protocol.Batch) { b.Records[0].Tenant = "acme\x00" }), nil, ledger.ErrInvalidName},
		{"bidi override in a tenant", remarshal(func(b *protocol.Batch) { b.Records[0].Tenant = "acme\u202egnp.exe" }), nil, ledger.ErrInvalidName},
		{"newline in a provider", remarshal(func(b *protocol.Batch) { b.Records[0].Provider = "p\nq" }), nil, ledger.ErrInvalidName},
		{"duplicate member in the payload", f.signRaw(t, protocol.PayloadType,
			append(payload[:len(payload)-1:len(payload)-1], []byte(`,"node":"node-01"}`)...)), nil, ledger.ErrDuplicateKey},
		// Names match exactly: a case variant is no field's, so unknown.
		{"member differing in case from one present", f.signRaw(t, protocol.PayloadType,
			append(payload[:len(payload)-1:len(payload)-1], []byte(`,"NODE":"node-01"}`)...)), nil, ledger.ErrMalformed},
		{"member differing in case from a known one", f.signRaw(t, protocol.PayloadType,
			bytes.Replace(payload, []byte(`"gpu_ms"`), []byte(`"GPU_MS"`), 1)), nil, ledger.ErrMalformed},
		// v1 read U+FFFD there; a model is no name, so no later check would.
		{"invalid UTF-8 in a model", f.signRaw(t, protocol.PayloadType,
			bytes.Replace(payload, []byte(`"model":"H100"`), []byte("\"model\":\"H100\xff\""), 1)), nil, ledger.ErrMalformed},
		{"duplicate member in the envelope", func() []byte {
			e := good
			return append(append([]byte{}, e[:len(e)-1]...), []byte(`,"payloadType":"x"}`)...)
		}(), nil, ledger.ErrDuplicateKey},
		{"unknown kind", remarshal(func(b *protocol.Batch) { b.Records[0].Kind = "free" }), nil, ledger.ErrInvalidRecord},
		{"empty window", remarshal(func(b *protocol.Batch) { b.Records[0].WindowEnd = b.Records[0].WindowStart }), nil, ledger.ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = f.lookup
			}
			_, _, err := ledger.Open(ctx, tc.env, keys)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want cause %s", err, tc.want)
			}
			c, ok := ledger.CauseOf(err)
			if !ok || c != tc.want {
				t.Fatalf("CauseOf = %q, %v; want %q", c, ok, tc.want)
			}
		})
	}
}

func TestOpenLookupFailureIsNotACause(t *testing.T) {
	f := newFixture(t, "node-01")
	s, err := f.sealer.Seal(context.Background(), 1, "", records("node-01", 1))
	if err != nil {
		t.Fatal(err)
	}
	dbDown := errors.New("database down")
	_, _, err = ledger.Open(context.Background(), s.Envelope, func(string) (ed25519.PublicKey, string, bool, error) {
		return nil, "", false, dbDown
	})
	if !errors.Is(err, dbDown) {
		t.Fatalf("err = %v, want the lookup's error", err)
	}
	if c, ok := ledger.CauseOf(err); ok {
		t.Fatalf("lookup failure reported as cause %q: the sender is not at fault", c)
	}
}

// TestOpenNamesTheMember: a refused member is named with the record it is
// in, so the sender's operator can find it in the batch.
func TestOpenNamesTheMember(t *testing.T) {
	f := newFixture(t, "node-01")
	_, _, payload := f.sealOpen(t, f.sealer, 3)
	// nth replaces the n-th (from 0) "gpu_ms": a member of record n.
	nth := func(n int, with string) []byte {
		parts := bytes.SplitAfterN(payload, []byte(`"gpu_ms":`), n+2)
		parts[n] = append(bytes.TrimSuffix(parts[n], []byte(`"gpu_ms":`)), with...)
		return bytes.Join(parts, nil)
	}
	tests := []struct {
		name    string
		payload []byte
		want    ledger.Cause
		names   []string
	}{
		{"a case variant", nth(2, `"GPU_MS":`), ledger.ErrMalformed, []string{`"GPU_MS"`, `/records/2`}},
		{"a repeated member", nth(1, `"gpu_ms":1,"gpu_ms":`), ledger.ErrDuplicateKey, []string{`"gpu_ms"`, `/records/1`}},
		{"a number out of range", nth(0, `"gpu_ms":1e`), ledger.ErrMalformed, []string{`/records/0/gpu_ms`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ledger.Open(context.Background(), f.signRaw(t, protocol.PayloadType, tc.payload), f.lookup)
			if c, _ := ledger.CauseOf(err); c != tc.want {
				t.Fatalf("err = %v, want cause %s", err, tc.want)
			}
			for _, n := range tc.names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("err = %v, want it to name %s", err, n)
				}
			}
		})
	}
}
