package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/gpumeter/gpumeter/authority/store"
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
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/batches", bytes.NewReader(body))
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		switch {
		case rr.Code >= 500:
			t.Fatalf("answer %d for body %q: %s", rr.Code, body, rr.Body.Bytes())
		case rr.Code != http.StatusOK && rr.Header().Get("Content-Type") != "application/problem+json":
			t.Fatalf("answer %d is not a problem: %q", rr.Code, rr.Header().Get("Content-Type"))
		}
	})
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
