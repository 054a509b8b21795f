package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

// checkAudited: the one refusal a fresh env answered is in the audit
// trail, with its cause, the hash and size of the body read (a body over
// maxB was read up to maxB) and its first 64 KiB, and the node, key and
// first seq exactly when the batch was authenticated.
func checkAudited(t *testing.T, e *env, cause string, body []byte, maxB int64) {
	t.Helper()
	ctx := context.Background()
	rs, err := e.Store.ListRefusals(ctx, store.RefusalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("audit trail: %d refusals, want 1: %+v", len(rs), rs)
	}
	r, err := e.Store.Refusal(ctx, rs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	read := body
	if maxB > 0 && int64(len(read)) > maxB {
		read = read[:maxB]
	}
	sum := sha256.Sum256(read)
	kept := read[:min(len(read), store.MaxRefusalEnvelope)]
	if r.Cause != cause || r.SHA256 != hex.EncodeToString(sum[:]) || r.Size != int64(len(read)) ||
		!bytes.Equal(r.Envelope, kept) || r.Truncated != (len(kept) < len(read)) || r.Detail == "" ||
		!strings.HasPrefix(r.Remote, "127.0.0.1:") || r.Received.IsZero() {
		t.Errorf("refusal kept as %+v (envelope %d bytes); want cause %s, the body's %d bytes", r, len(r.Envelope), cause, len(read))
	}
	// A batch refused for its content names its key's node (first_seq is
	// known only when it decoded whole).
	if r.Node != "" && (r.Node != node1 || r.KeyID == "") {
		t.Errorf("authenticated refusal: node %q key %q first_seq %d", r.Node, r.KeyID, r.FirstSeq)
	}
}

func TestRefusalsAudited(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	// Over 64 KiB of garbage: kept cut, hashed whole.
	garbage := bytes.Repeat([]byte("{"), store.MaxRefusalEnvelope+100)
	if a := e.post(garbage); a.status != http.StatusBadRequest {
		t.Fatalf("garbage: %d %+v", a.status, a)
	}
	checkAudited(t, e, "malformed", garbage, 0)

	// An authenticated refusal names the node, key and first seq.
	s := e.seal(e.sealer, 3, "", rec(gpuA, 5, "acme", 60000))
	if a := e.post(s.Envelope); a.status != http.StatusConflict {
		t.Fatalf("sequence gap: %d %+v", a.status, a)
	}
	rs, err := e.Store.ListRefusals(ctx, store.RefusalFilter{Node: node1})
	if err != nil || len(rs) != 1 || rs[0].Cause != "sequence-gap" || rs[0].FirstSeq != 3 || rs[0].KeyID == "" {
		t.Fatalf("node-01's refusals: %+v, %v", rs, err)
	}
	// An accepted batch is not a refusal.
	e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "acme", 60000)))
	if all, _ := e.Store.ListRefusals(ctx, store.RefusalFilter{}); len(all) != 2 {
		t.Errorf("%d refusals after an accepted batch, want 2", len(all))
	}
}

// failingAuditor fails every refusal and counts them.
type failingAuditor struct{ calls atomic.Int64 }

func (f *failingAuditor) RecordRefusal(context.Context, store.Refusal, []byte) error {
	f.calls.Add(1)
	return errors.New("disk full")
}

// TestAuditFailureKeepsTheAnswer: when the audit trail cannot keep a
// refusal the sender gets the same answer, and the failure is logged and
// counted. A 500 (the authority's own failure) is not a refusal.
func TestAuditFailureKeepsTheAnswer(t *testing.T) {
	e := newEnv(t, 0)
	aud := &failingAuditor{}
	var logs bytes.Buffer
	srv, err := server.New(server.Options{Ingester: e.Ingester, Store: e.Store, Auditor: aud,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)
	resp, err := h.Client().Post(h.URL+"/v1/batches", "application/json", strings.NewReader("not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("answer with a failing audit trail: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if aud.calls.Load() != 1 || !strings.Contains(logs.String(), "not kept in the audit trail") || !strings.Contains(logs.String(), "disk full") {
		t.Errorf("audit calls %d, log %s", aud.calls.Load(), logs.String())
	}
	m, err := h.Client().Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(m.Body)
	m.Body.Close()
	if !strings.Contains(body.String(), "gpumeter_authority_refusals_unrecorded_total 1") {
		t.Errorf("metrics lack gpumeter_authority_refusals_unrecorded_total 1")
	}

	// A closed store: the key lookup fails, the answer is 500, nothing is
	// audited.
	st, err := store.Open(context.Background(), store.DriverSQLite, filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ingest.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	count := &failingAuditor{}
	srv2, err := server.New(server.Options{Ingester: in, Store: st, Auditor: count})
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	w := httptest.NewRecorder()
	sealed := e.seal(e.sealer, 1, "", rec(gpuA, 5, "acme", 60000))
	srv2.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/batches", bytes.NewReader(sealed.Envelope)))
	if w.Code != http.StatusInternalServerError || count.calls.Load() != 0 {
		t.Errorf("closed store: %d, %d audited; want 500 and none", w.Code, count.calls.Load())
	}
}

// TestMetricsReadTheStore: /metrics reads the live store at each scrape.
func TestMetricsReadTheStore(t *testing.T) {
	e := newEnv(t, 0)
	m := e.metrics()
	for _, want := range []string{`gpumeter_authority_collector_success{collector="store"} 1`,
		`gpumeter_authority_node_forked{node="node-01"} 0`, `gpumeter_authority_node_forked{node="node-02"} 0`,
		`gpumeter_authority_held_subsidy_fen 0`, `gpumeter_authority_reviews{status="held"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "gpumeter_authority_node_last_batch_timestamp_seconds{") {
		t.Error("a last batch time before any batch")
	}
	e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 5, "acme", 60000)))
	// Received at the ingester's (virtual) now.
	want := `gpumeter_authority_node_last_batch_timestamp_seconds{node="node-01"} ` + strconv.FormatFloat(float64(t0.Unix()), 'e', -1, 64)
	if m := e.metrics(); !strings.Contains(m, want) {
		t.Errorf("metrics lack %s", want)
	}
}
