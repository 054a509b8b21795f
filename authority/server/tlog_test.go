package server_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/protocol"
)

// newLogEnv is an authority keeping a verifiable log, and its verifier.
func newLogEnv(t *testing.T, driver string) (*env, *tlog.Verifier) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := tlog.NewSigner("authority.example/log", k)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tlog.NewVerifier(sg.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, driver, "", 0, func(o *authoritytest.Options) { o.LogSigner = sg })
	return e, v
}

// logGet GETs path (no credential) with the log-size header when size > 0.
func (e *env) logGet(path string, size uint64) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.HTTP.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if size > 0 {
		req.Header.Set(protocol.LogSizeHeader, strconv.FormatUint(size, 10))
	}
	resp, body := e.roundTrip(req)
	return resp.StatusCode, body
}

// postLogged posts body with the log-size header and decodes the answer.
func (e *env) postLogged(body []byte, size uint64) protocol.BatchAnswer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.HTTP.URL+"/v1/batches", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if size > 0 {
		req.Header.Set(protocol.LogSizeHeader, strconv.FormatUint(size, 10))
	}
	resp, b := e.roundTrip(req)
	var a protocol.BatchAnswer
	if err := json.Unmarshal(b, &a); err != nil || resp.StatusCode != http.StatusOK || a.Log == nil {
		e.t.Fatalf("post: %d %s (%v)", resp.StatusCode, b, err)
	}
	return a
}

// TestLogReceipts: an agent checks, from nothing but its envelope and the
// log's key, that its batch is in the log and that the log only grew.
func TestLogReceipts(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e, v := newLogEnv(t, driver)
		var (
			last tlog.Checkpoint
			prev string
		)
		var first []byte
		for i := range 3 {
			s := e.seal(e.sealer, uint64(i+1), prev, rec(gpuA, 30-i, "t1", 60000))
			prev = s.Hash
			if i == 0 {
				first = s.Envelope
			}
			a := e.postLogged(s.Envelope, last.Size)
			cp, err := v.Open([]byte(a.Log.Checkpoint))
			if err != nil {
				t.Fatal(err)
			}
			leaf := tlog.BatchLeaf(node1, s.FirstSeq, s.LastSeq, s.Envelope)
			if a.Log.LeafIndex == nil {
				t.Fatal("no leaf index")
			}
			// merkle's own verifier, not ours.
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, *a.Log.LeafIndex, cp.Size, tlog.LeafHash(leaf), a.Log.Inclusion, cp.Root); err != nil {
				t.Fatalf("batch %d: %v", i, err)
			}
			if last.Size > 0 {
				if a.Log.ConsistencyFrom != last.Size {
					t.Fatalf("consistency from %d, want %d", a.Log.ConsistencyFrom, last.Size)
				}
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, last.Size, cp.Size, a.Log.Consistency, last.Root, cp.Root); err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
			}
			last = cp
		}
		// A duplicate's receipt names the first leaf.
		a := e.postLogged(first, 0)
		if !a.Duplicate || a.Log.LeafIndex == nil || *a.Log.LeafIndex != 0 || a.Log.ConsistencyFrom != 0 {
			t.Fatalf("duplicate: %+v", a.Log)
		}
		cp, err := v.Open([]byte(a.Log.Checkpoint))
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyInclusion(cp, 0, tlog.BatchLeaf(node1, 1, 1, first), a.Log.Inclusion); err != nil {
			t.Fatal(err)
		}
		// The head read carries the checkpoint and the consistency proof.
		req := e.operatorGet("/v1/nodes/" + node1 + "/head")
		req.Header.Set(protocol.LogSizeHeader, "1")
		_, body := e.roundTrip(req)
		var h protocol.HeadAnswer
		if err := json.Unmarshal(body, &h); err != nil || h.Log == nil || h.Log.LeafIndex != nil || h.Log.ConsistencyFrom != 1 {
			t.Fatalf("head: %s, %v", body, err)
		}
		one, err := v.Open(must(e.Store.LogCheckpointAt(t.Context(), 1)))
		if err != nil {
			t.Fatal(err)
		}
		hcp, err := v.Open([]byte(h.Log.Checkpoint))
		if err != nil || tlog.VerifyConsistency(one, hcp, h.Log.Consistency) != nil {
			t.Fatalf("head consistency: %v", err)
		}
		// The endpoints, with no credential.
		code, body := e.logGet(protocol.PathLogCheckpoint, 0)
		if code != http.StatusOK || string(body) != h.Log.Checkpoint {
			t.Errorf("checkpoint: %d %q", code, body)
		}
		code, body = e.logGet(protocol.PathLogKey, 0)
		if code != http.StatusOK || !strings.HasPrefix(string(body), "authority.example/log+") {
			t.Errorf("key: %d %q", code, body)
		}
		if kv, err := tlog.NewVerifier(string(body)); err != nil || kv.Origin() != v.Origin() {
			t.Errorf("key %q: %v", body, err)
		}
		code, body = e.logGet(protocol.PathLogInclusion+"?index=1&size=3", 0)
		var p protocol.LogProof
		if err := json.Unmarshal(body, &p); code != http.StatusOK || err != nil || p.Size != 3 {
			t.Fatalf("inclusion: %d %s", code, body)
		}
		if err := tlog.VerifyInclusion(mustOpen(t, v, e, 3), 1, tlog.BatchLeaf(node1, 2, 2, nil), p.Hashes); !errors.Is(err, tlog.ErrInclusion) {
			t.Errorf("another leaf's data verified: %v", err)
		}
		code, body = e.logGet(protocol.PathLogConsistency+"?from=1&to=3", 0)
		if err := json.Unmarshal(body, &p); code != http.StatusOK || err != nil || tlog.VerifyConsistency(one, mustOpen(t, v, e, 3), p.Hashes) != nil {
			t.Fatalf("consistency: %d %s", code, body)
		}
		for _, bad := range []string{
			protocol.PathLogInclusion + "?index=1", protocol.PathLogInclusion + "?index=x&size=3",
			protocol.PathLogInclusion + "?index=0&size=99", protocol.PathLogInclusion + "?index=3&size=3",
			protocol.PathLogConsistency + "?from=1&to=99", protocol.PathLogConsistency + "?from=3&to=1",
			protocol.PathLogConsistency + "?from=-1&to=1",
		} {
			code, body := e.logGet(bad, 0)
			var pr protocol.Problem
			if code != http.StatusBadRequest || json.Unmarshal(body, &pr) != nil || pr.Detail == "" {
				t.Errorf("%s: %d %s; want 400 with a problem", bad, code, body)
			}
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// mustOpen is the verified checkpoint kept for size.
func mustOpen(t *testing.T, v *tlog.Verifier, e *env, size uint64) tlog.Checkpoint {
	t.Helper()
	cp, err := v.Open(must(e.Store.LogCheckpointAt(t.Context(), size)))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestNoLog: without a log, answers carry no receipt and the log's
// endpoints answer 404.
func TestNoLog(t *testing.T) {
	e := newEnv(t, 0)
	s := e.seal(e.sealer, 1, "", rec(gpuA, 30, "t1", 60000))
	_, body := e.roundTrip(mustReq(t, http.MethodPost, e.HTTP.URL+"/v1/batches", s.Envelope))
	if bytes.Contains(body, []byte(`"log"`)) {
		t.Errorf("answer without a log carries one: %s", body)
	}
	for _, p := range []string{protocol.PathLogCheckpoint, protocol.PathLogKey, protocol.PathLogInclusion + "?index=0&size=1"} {
		if code, body := e.logGet(p, 0); code != http.StatusNotFound {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
}

func mustReq(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}
