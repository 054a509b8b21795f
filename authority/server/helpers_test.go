package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// t0 is the authority's virtual now; records end before it.
var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

const (
	node1    = "node-01"
	node2    = "node-02"
	provider = "example-cloud"
	gpuA     = "GPU-aaaaaaaa-0000-0000-0000-000000000001"
	gpuB     = "GPU-aaaaaaaa-0000-0000-0000-000000000002"
	gpuZ     = "GPU-99999999-0000-4000-8000-000000000009" // node-02's
)

// env is an authority on a real store (SQLite unless a test asks for
// another driver) behind a real HTTP server, with node-01 (key) and
// node-02 registered at t0, and the operators' token adminToken.
type env struct {
	*authoritytest.Authority
	t      testing.TB
	clock  *clock.Virtual
	key    ed25519.PrivateKey // node-01's registered key
	sealer *ledger.Sealer
}

func newEnv(t testing.TB, maxBody int64) *env {
	t.Helper()
	return newEnvOn(t, store.DriverSQLite, maxBody)
}

// newEnvOn is newEnv on the store driver (authoritytest.Drivers).
func newEnvOn(t testing.TB, driver string, maxBody int64) *env {
	t.Helper()
	return newEnvIn(t, driver, "", maxBody)
}

// newEnvIn is newEnvOn with the SQLite file in dir ("" is t.TempDir()).
func newEnvIn(t testing.TB, driver, dir string, maxBody int64) *env {
	t.Helper()
	return newEnvWith(t, driver, dir, maxBody, nil)
}

// newEnvWith is newEnvIn with change applied to the authority's options.
func newEnvWith(t testing.TB, driver, dir string, maxBody int64, change func(*authoritytest.Options)) *env {
	t.Helper()
	e := &env{t: t, clock: clock.NewVirtual(t0)}
	e.key = newKey(t)
	opts := authoritytest.Options{
		Nodes: []authoritytest.Node{
			{ID: node1, Provider: provider, PublicKey: pub(e.key), GPUs: []string{gpuA, gpuB}},
			{ID: node2, Provider: provider, PublicKey: pub(newKey(t)), GPUs: []string{gpuZ}},
		},
		Driver:        driver,
		DBDir:         dir,
		Clock:         e.clock,
		MaxBodyBytes:  maxBody,
		OperatorToken: []byte(adminToken),
	}
	if change != nil {
		change(&opts)
	}
	e.Authority = authoritytest.New(t, opts)
	e.sealer = e.newSealer(node1, e.key)
	return e
}

var newKey = testutil.NewKey

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func (e *env) newSealer(node string, key ed25519.PrivateKey) *ledger.Sealer {
	e.t.Helper()
	s, err := ledger.NewSealer(node, key, e.clock.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// rec is a record of node-01 on gpu, for the minute starting min minutes
// before t0, with ms of GPU time (usage when tenant is set, else idle).
func rec(gpu string, min int, tenant string, ms int64) protocol.Record {
	start := t0.Add(-time.Duration(min) * time.Minute)
	r := protocol.Record{
		Node: node1, Provider: provider, WindowStart: start, WindowEnd: start.Add(time.Minute),
		Kind: protocol.KindIdle, Tenant: tenant, GPUUUID: gpu, ParentUUID: gpu, Model: "NVIDIA H100 80GB HBM3",
		SliceNum: 1, SliceDen: 1, GPUMillis: ms, UtilizationPercent: -1, EnergyMillijoules: -1,
	}
	if tenant != "" {
		r.Kind, r.Attribution = protocol.KindUsage, "cgroup"
	}
	r.ID = r.ComputeID()
	return r
}

// reID recomputes a record's id after a test changed its identity fields.
func reID(r protocol.Record) protocol.Record { r.ID = r.ComputeID(); return r }

func (e *env) seal(s *ledger.Sealer, first uint64, prev string, recs ...protocol.Record) ledger.Sealed {
	e.t.Helper()
	b, err := s.Seal(context.Background(), first, prev, recs)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// answer is a decoded response: the 200 answer or a problem.
type answer struct {
	status        int
	contentType   string
	Node          string     `json:"node"`
	Head          uint64     `json:"head"`
	HeadHash      string     `json:"head_hash"`
	Duplicate     bool       `json:"duplicate"`
	Type          string     `json:"type"`
	Title         string     `json:"title"`
	Status        int        `json:"status"`
	Detail        string     `json:"detail"`
	ExpectedSeq   *uint64    `json:"expected_seq"`
	Hold          bool       `json:"hold"`
	AuthorityTime *time.Time `json:"authority_time"`
	LastWindowEnd *time.Time `json:"last_window_end"`
}

// roundTrip sends req to the test server and answers the response with
// its whole body read (and closed).
func (e *env) roundTrip(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := e.HTTP.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, body
}

func (e *env) do(req *http.Request) answer {
	e.t.Helper()
	resp, body := e.roundTrip(req)
	a := answer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	if err := json.Unmarshal(body, &a); err != nil {
		e.t.Fatalf("%s %s: answer %d is not JSON: %v: %q", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
	return a
}

func (e *env) post(body []byte) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.HTTP.URL+"/v1/batches", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return e.do(req)
}

// get reads path with the operators' token.
func (e *env) get(path string) answer {
	e.t.Helper()
	return e.do(e.operatorGet(path))
}

// operatorGet is a GET of path with the operators' token.
func (e *env) operatorGet(path string) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.HTTP.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return req
}

// mustAccept posts and fails unless the batch is stored.
func (e *env) mustAccept(s ledger.Sealed) {
	e.t.Helper()
	if a := e.post(s.Envelope); a.status != http.StatusOK || a.Duplicate || a.Head != s.LastSeq {
		e.t.Fatalf("batch %d-%d: got %d %+v, want 200 head %d", s.FirstSeq, s.LastSeq, a.status, a, s.LastSeq)
	}
}

func (e *env) metrics() string {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.HTTP.URL+"/metrics", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	_, b := e.roundTrip(req)
	return string(b)
}

func problemType(cause string) string { return fmt.Sprintf("https://gpumeter.dev/problems/%s", cause) }

// sealRaw signs a batch of recs numbered from first with key, as a
// dishonest node would, without the sealer's own checks (ledger.Seal
// refuses what the authority refuses; an attacker's signer does not).
func (e *env) sealRaw(key ed25519.PrivateKey, node string, first uint64, prev string, recs ...protocol.Record) []byte {
	e.t.Helper()
	b := protocol.Batch{Node: node, KeyID: signing.KeyID(pub(key)), FirstSeq: first, LastSeq: first + uint64(len(recs)) - 1,
		PrevHash: prev, Created: e.clock.Now().UTC().Truncate(time.Millisecond), Records: make([]protocol.Record, len(recs))}
	for i, r := range recs {
		r.Seq = first + uint64(i)
		b.Records[i] = r
	}
	payload, err := json.Marshal(&b)
	if err != nil {
		e.t.Fatal(err)
	}
	return signRaw(e.t, protocol.PayloadType, payload, key)
}
