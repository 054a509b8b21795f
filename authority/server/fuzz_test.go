package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// FuzzIngest feeds arbitrary bodies to POST /v1/batches: whatever the
// sender writes, the answer is 200 or a problem of the protocol, never a
// 500 or a panic.
//
// Everything but the request is set up once per fuzzing process (server,
// store, keys, nodes). Most inputs are refused, and every refusal is kept
// in the audit trail: a SQLite commit, fsynced. On disk that fsync was
// ~1.5 ms of the ~2 ms an input cost, and minimizing each new input ran
// thousands of them, so the store lives on a tmpfs (/dev/shm) when there
// is one: the same SQL and code, without the wait for the disk.
func FuzzIngest(f *testing.F) {
	e := newEnvIn(f, store.DriverSQLite, fuzzDBDir(f), 1<<20)
	b1 := e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000), rec(gpuB, 3, "", 60000))
	b2 := e.seal(e.sealer, 2, b1.Hash, rec(gpuA, 2, "t1", 60000))
	f.Add(b1.Envelope)
	f.Add(b2.Envelope)
	f.Add(e.seal(e.sealer, 1, "", rec(gpuA, 3, "t2", 60000)).Envelope)
	f.Add([]byte(`{"payloadType":"application/vnd.gpumeter.batch.v1+json","payload":"e30=","signatures":[{"keyid":"x","sig":"AA=="}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	h := e.Server.Handler()
	f.Fuzz(func(t *testing.T, body []byte) { postFuzzed(t, h, body) })
}

// FuzzIngestSigned fuzzes the signed payload: each input is a batch's JSON,
// signed inside the target with the registered node's own key, so the
// input passes the signature and reaches what a dishonest provider can
// actually send (the decoder, names, windows, layouts, the chain, the
// physical limits). The seeds are real batches of the registered node.
func FuzzIngestSigned(f *testing.F) {
	e := newEnvIn(f, store.DriverSQLite, fuzzDBDir(f), 1<<20)
	b1 := e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000), rec(gpuB, 3, "", 60000))
	b2 := e.seal(e.sealer, 2, b1.Hash, rec(gpuA, 2, "t1", 60000))
	for _, s := range [][]byte{b1.Envelope, b2.Envelope, e.seal(e.sealer, 1, "", rec(gpuA, 3, "t2", 60000)).Envelope} {
		f.Add(payloadOf(f, s))
	}
	f.Add([]byte(`{"node":"node-01","first_seq":1,"last_seq":1,"records":[]}`))
	h := e.Server.Handler()
	f.Fuzz(func(t *testing.T, payload []byte) {
		postFuzzed(t, h, signRaw(t, protocol.PayloadType, payload, e.key))
	})
}

// postFuzzed posts body and fails on anything but 200 or a problem of the
// protocol: a 500 or a panic is a finding.
func postFuzzed(t *testing.T, h http.Handler, body []byte) {
	req := httptest.NewRequest(http.MethodPost, "/v1/batches", bytes.NewReader(body))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	switch {
	case rr.Code >= 500:
		t.Fatalf("answer %d for body %q: %s", rr.Code, body, rr.Body.Bytes())
	case rr.Code != http.StatusOK && rr.Header().Get("Content-Type") != "application/problem+json":
		t.Fatalf("answer %d is not a problem: %q", rr.Code, rr.Header().Get("Content-Type"))
	}
}

// payloadOf is the payload a sealed envelope signs.
func payloadOf(tb testing.TB, envelope []byte) []byte {
	tb.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		tb.Fatal(err)
	}
	p, err := env.DecodeB64Payload()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// fuzzDBDir is a fresh directory on /dev/shm, removed after f, or "" (a
// t.TempDir) where there is no writable /dev/shm.
func fuzzDBDir(f *testing.F) string {
	dir, err := os.MkdirTemp("/dev/shm", "gpumeter-fuzz-")
	if err != nil {
		return ""
	}
	f.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
