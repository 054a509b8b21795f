package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// mutate decodes an envelope, lets f change it and re-encodes it.
func mutate(t testing.TB, envJSON []byte, f func(env *dsse.Envelope)) []byte {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(envJSON, &env); err != nil {
		t.Fatal(err)
	}
	f(&env)
	out, err := json.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flipB64 flips one bit of the byte at i of a base64 field.
func flipB64(t testing.TB, s string, i int) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	raw[i] ^= 0x01
	return base64.StdEncoding.EncodeToString(raw)
}

// signRaw signs payload as a DSSE envelope of payloadType with key, as a
// node would if it sent something other than a sealed batch.
func signRaw(t testing.TB, payloadType string, payload []byte, key []byte) []byte {
	t.Helper()
	env, err := testutil.EnvelopeSigner(t, key).SignPayload(context.Background(), payloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRejections(t *testing.T) {
	u := func(n uint64) *uint64 { return &n }
	tests := []struct {
		name   string
		maxB   int64
		before func(e *env) // accepted batches that set the stage
		body   func(e *env) []byte
		status int
		cause  string
		expect *uint64
	}{
		{
			name: "flipped byte in payload",
			body: func(e *env) []byte {
				s := e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60000))
				return mutate(t, s.Envelope, func(env *dsse.Envelope) { env.Payload = flipB64(t, env.Payload, 40) })
			},
			status: 401, cause: "bad-signature",
		},
		{
			name: "flipped byte in signature",
			body: func(e *env) []byte {
				s := e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60000))
				return mutate(t, s.Envelope, func(env *dsse.Envelope) { env.Signatures[0].Sig = flipB64(t, env.Signatures[0].Sig, 3) })
			},
			status: 401, cause: "bad-signature",
		},
		{
			name: "unknown key",
			body: func(e *env) []byte {
				return e.seal(e.newSealer(node1, newKey(t)), 1, "", rec(gpuA, 5, "t1", 60000)).Envelope
			},
			status: 401, cause: "unknown-key",
		},
		{
			name: "revoked key",
			body: func(e *env) []byte {
				k := newKey(t)
				if _, err := e.Store.AddKey(context.Background(), node1, pub(k), time.Time{}, t0); err != nil {
					t.Fatal(err)
				}
				if err := e.Store.RevokeKey(context.Background(), signing.KeyID(pub(k)), t0.Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
				return e.seal(e.newSealer(node1, k), 1, "", rec(gpuA, 5, "t1", 60000)).Envelope
			},
			status: 401, cause: "revoked-key",
		},
		{
			name: "key of another node",
			body: func(e *env) []byte {
				r := rec(gpuZ, 5, "t1", 60000)
				r.Node = node2
				return e.seal(e.newSealer(node2, e.key), 1, "", reID(r)).Envelope
			},
			status: 403, cause: "node-mismatch",
		},
		{
			name:   "fork: same first_seq, different content",
			before: func(e *env) { e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60000))) },
			body: func(e *env) []byte {
				return e.seal(e.sealer, 1, "", rec(gpuA, 5, "t2", 60000)).Envelope
			},
			status: 409, cause: "fork", expect: u(2),
		},
		{
			name:   "skipped sequence",
			before: func(e *env) { e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60000))) },
			body: func(e *env) []byte {
				return e.seal(e.sealer, 3, strings.Repeat("0", 64), rec(gpuA, 4, "t1", 60000)).Envelope
			},
			status: 409, cause: "sequence-gap", expect: u(2),
		},
		{
			// A batch at head+1 that does not chain to the head, from an
			// agent that sends no instance id: a second signer, answered
			// fork (what such an agent understands).
			name:   "second signer at head+1, old agent",
			before: func(e *env) { e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60000))) },
			body: func(e *env) []byte {
				return e.seal(e.sealer, 2, strings.Repeat("0", 64), rec(gpuA, 4, "t1", 60000)).Envelope
			},
			status: 409, cause: "fork", expect: u(2),
		},
		{
			name: "window in the future",
			body: func(e *env) []byte {
				return e.seal(e.sealer, 1, "", rec(gpuA, -5, "t1", 60000)).Envelope // ends t0+6m
			},
			status: 422, cause: "future-window",
		},
		{
			name: "record with more GPU time than its window",
			body: func(e *env) []byte {
				return e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60001)).Envelope
			},
			status: 422, cause: "over-wall-time",
		},
		{
			name: "more GPU time than wall time within one batch",
			body: func(e *env) []byte {
				return e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 40000), rec(gpuA, 5, "t2", 40000)).Envelope
			},
			status: 422, cause: "over-wall-time",
		},
		{
			name:   "more GPU time than wall time across two batches",
			before: func(e *env) { e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 40000))) },
			body: func(e *env) []byte {
				return e.seal(e.sealer, 2, e.headHash(), rec(gpuA, 5, "t2", 40000)).Envelope
			},
			status: 422, cause: "over-wall-time",
		},
		{
			name:   "window partly overlapping a stored one",
			before: func(e *env) { e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 10000))) },
			body: func(e *env) []byte {
				r := rec(gpuA, 5, "t2", 10000)
				r.WindowStart, r.WindowEnd = r.WindowStart.Add(30*time.Second), r.WindowEnd.Add(30*time.Second)
				return e.seal(e.sealer, 2, e.headHash(), reID(r)).Envelope
			},
			status: 422, cause: "over-wall-time",
		},
		{
			name: "GPU UUID of another node",
			body: func(e *env) []byte {
				return e.seal(e.sealer, 1, "", rec(gpuZ, 5, "t1", 60000)).Envelope
			},
			status: 422, cause: "gpu-claimed",
		},
		{
			name: "unit UUID is another node's GPU",
			body: func(e *env) []byte {
				r := rec(gpuA, 5, "t1", 60000)
				r.GPUUUID, r.MIGProfile, r.SliceNum, r.SliceDen = gpuZ, "1g.10gb", 1, 7
				return e.sealRaw(e.key, node1, 1, "", reID(r))
			},
			status: 422, cause: "invalid-uuid",
		},
		{
			name: "GPU not registered",
			body: func(e *env) []byte {
				return e.seal(e.sealer, 1, "", rec("GPU-0000000f-0000-4000-8000-00000000000f", 5, "t1", 60000)).Envelope
			},
			status: 422, cause: "gpu-not-registered",
		},
		{
			name: "record id is not the record's identity",
			body: func(e *env) []byte {
				r := rec(gpuA, 5, "t1", 60000)
				r.ID = strings.Repeat("ab", 16)
				return e.seal(e.sealer, 1, "", r).Envelope
			},
			status: 422, cause: "invalid-record",
		},
		{
			name: "provider other than the node's",
			body: func(e *env) []byte {
				r := rec(gpuA, 5, "t1", 60000)
				r.Provider = "other-cloud"
				return e.seal(e.sealer, 1, "", reID(r)).Envelope
			},
			status: 422, cause: "invalid-record",
		},
		{
			name:   "record already stored in an earlier batch",
			before: func(e *env) { e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 100))) },
			body: func(e *env) []byte {
				return e.seal(e.sealer, 2, e.headHash(), rec(gpuA, 5, "t1", 100)).Envelope
			},
			status: 422, cause: "invalid-record",
		},
		{
			name: "oversized body",
			maxB: 4096,
			body: func(e *env) []byte {
				return append([]byte(`{"payloadType":"`), bytes.Repeat([]byte("x"), 5000)...)
			},
			status: 413, cause: "body-too-large",
		},
		{
			name: "malformed JSON",
			body: func(e *env) []byte {
				return []byte(`{"payloadType": "application/vnd.gpumeter.batch.v1+json", "payload": `)
			},
			status: 400, cause: "malformed",
		},
		{
			name: "wrong payload type",
			body: func(e *env) []byte {
				s := e.seal(e.sealer, 1, "", rec(gpuA, 5, "t1", 60000))
				var env dsse.Envelope
				if err := json.Unmarshal(s.Envelope, &env); err != nil {
					t.Fatal(err)
				}
				payload, err := base64.StdEncoding.DecodeString(env.Payload)
				if err != nil {
					t.Fatal(err)
				}
				return signRaw(t, "application/json", payload, e.key)
			},
			status: 400, cause: "malformed",
		},
		{
			name: "signed payload that is not a batch",
			body: func(e *env) []byte {
				return signRaw(t, protocol.PayloadType, []byte(`{"node":"node-01","surprise":1}`), e.key)
			},
			status: 400, cause: "malformed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authoritytest.EachDriver(t, func(t *testing.T, driver string) {
				e := newEnvOn(t, driver, tc.maxB)
				if tc.before != nil {
					tc.before(e)
				}
				body := tc.body(e)
				before := e.Counts(t)
				headBefore := e.get("/v1/nodes/" + node1 + "/head")
				a := e.post(body)
				if a.status != tc.status || a.Status != tc.status || a.Type != problemType(tc.cause) {
					t.Fatalf("got %d %+v, want %d %s", a.status, a, tc.status, tc.cause)
				}
				if a.contentType != "application/problem+json" || a.Title == "" || a.Detail == "" {
					t.Errorf("problem not RFC 9457 shaped: content type %q, %+v", a.contentType, a)
				}
				if (a.ExpectedSeq == nil) != (tc.expect == nil) || (tc.expect != nil && *a.ExpectedSeq != *tc.expect) {
					t.Errorf("expected_seq = %v, want %v", a.ExpectedSeq, tc.expect)
				}
				if after := e.Counts(t); after != before {
					t.Errorf("rows changed by a rejected batch: %+v -> %+v", before, after)
				}
				if h := e.get("/v1/nodes/" + node1 + "/head"); h.Head != headBefore.Head || h.HeadHash != headBefore.HeadHash {
					t.Errorf("head moved: %+v -> %+v", headBefore, h)
				}
				want := `gpumeter_authority_batches_rejected_total{cause="` + tc.cause + `"} 1`
				if m := e.metrics(); !strings.Contains(m, want) {
					t.Errorf("metrics lack %s", want)
				}
				checkAudited(t, e, tc.cause, body, tc.maxB)
			})
		})
	}
}

func (e *env) headHash() string {
	e.t.Helper()
	a := e.get("/v1/nodes/" + node1 + "/head")
	if a.status != http.StatusOK {
		e.t.Fatalf("head: %d %+v", a.status, a)
	}
	return a.HeadHash
}

// TestRejectionLogLine: one structured line per refusal, with node and
// cause, and no key material.
func TestRejectionLogLine(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		var buf bytes.Buffer
		srv, err := server.New(server.Options{Ingester: e.Ingester, Store: e.Store, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		body := e.seal(e.sealer, 1, "", rec("GPU-0000000f-0000-4000-8000-00000000000f", 5, "t1", 60000)).Envelope
		rr := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/v1/batches", bytes.NewReader(body)))
		if rr.Code != http.StatusUnprocessableEntity {
			t.Fatalf("status %d", rr.Code)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 1 {
			t.Fatalf("%d log lines, want 1: %q", len(lines), buf.String())
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
			t.Fatal(err)
		}
		if line["node"] != node1 || line["cause"] != "gpu-not-registered" || line["level"] != "WARN" {
			t.Errorf("log line = %v", line)
		}
		if strings.Contains(lines[0], signing.EncodePublicKey(pub(e.key))) || strings.Contains(lines[0], "\"sig\"") {
			t.Errorf("log line carries key material: %s", lines[0])
		}
	})
}
