package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// readAnswer is the answer of a GET of path with the Authorization header auth ("" = none),
// decoded as a usage report when it is one.
type readAnswer struct {
	status int
	header http.Header
	body   string
	report server.UsageReport
	answer
}

func (e *env) read(path, auth string) readAnswer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.HTTP.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, b := e.roundTrip(req)
	a := readAnswer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &a.answer)
	_ = json.Unmarshal(b, &a.report)
	return a
}

// signed is the header of a read of path signed by node-01's key at the
// authority's now plus skew.
func (e *env) signed(path string, skew time.Duration) string {
	return protocol.SignRead(e.key, signing.KeyID(pub(e.key)), http.MethodGet, path, e.clock.Now().Add(skew))
}

func TestReadsNeedAuthentication(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		ctx := context.Background()
		// node-03, registered here with a key the test holds, has usage of
		// its own, so that a read forced to node-01 can be told apart.
		key3 := newKey(t)
		const node3, gpu3 = "node-03", "GPU-aaaaaaaa-0000-4000-8000-000000000003"
		reg := store.Registration{ID: node3, Provider: provider, Key: pub(key3), GPUs: store.GPUsOf("H100-SXM5-80GB", gpu3),
			Since: authoritytest.DefaultSince}
		if err := e.Store.RegisterNode(ctx, reg, t0); err != nil {
			t.Fatal(err)
		}
		if err := e.Store.SeedInventory(ctx, node3, authoritytest.DefaultSince, time.Minute, 0,
			map[string]store.Layout{gpu3: {Instances: map[string]string{}}}); err != nil {
			t.Fatal(err)
		}
		e.mustAccept(e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000)))
		r3 := rec(gpu3, 3, "t3", 30000)
		r3.Node = node3
		e.mustAccept(e.seal(e.newSealer(node3, key3), 1, "", reID(r3)))
		// A key of node-01 revoked a minute ago, and one revoked only from
		// an hour on.
		revoked, later := newKey(t), newKey(t)
		for _, k := range []struct {
			key ed25519.PrivateKey
			at  time.Time
		}{{revoked, t0.Add(-time.Minute)}, {later, t0.Add(time.Hour)}} {
			id, err := e.Store.AddKey(ctx, node1, pub(k.key), time.Time{}, t0.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Store.RevokeKey(ctx, id, k.at); err != nil {
				t.Fatal(err)
			}
		}

		head1 := "/v1/nodes/" + node1 + "/head"
		usage := "/v1/usage?from=" + t0.Add(-time.Hour).Format(time.RFC3339) + "&to=" + t0.Format(time.RFC3339)
		signedBy := func(k ed25519.PrivateKey, path string, at time.Time) string {
			return protocol.SignRead(k, signing.KeyID(pub(k)), http.MethodGet, path, at)
		}
		id1 := signing.KeyID(pub(e.key))
		tests := []struct {
			name   string
			path   string
			auth   string
			status int
			cause  string
			detail string
		}{
			{name: "no credentials: head", path: head1, status: 401, cause: protocol.Unauthorized, detail: "no credentials"},
			{name: "no credentials: usage", path: usage, status: 401, cause: protocol.Unauthorized, detail: "no credentials"},
			{name: "wrong bearer token", path: head1, auth: "Bearer " + strings.Repeat("x", len(adminToken)), status: 401, cause: protocol.Unauthorized},
			{name: "another scheme", path: head1, auth: "Basic " + adminToken, status: 401, cause: protocol.Unauthorized, detail: `"Basic"`},
			{name: "malformed signed read", path: head1, auth: protocol.ReadScheme + ` key_id="x"`, status: 401, cause: protocol.Unauthorized, detail: "needs key_id, ts and sig"},
			{name: "unknown key", path: head1, auth: signedBy(newKey(t), head1, t0), status: 401, cause: protocol.Unauthorized, detail: "not registered"},
			{name: "wrong signature: another key under node-01's key id", path: head1,
				auth: protocol.SignRead(newKey(t), id1, http.MethodGet, head1, t0), status: 401, cause: protocol.Unauthorized, detail: "does not verify"},
			{name: "wrong signature: signed for another URI", path: usage, auth: e.signed(head1, 0), status: 401, cause: protocol.Unauthorized, detail: "does not verify"},
			{name: "wrong signature: the query changed", path: usage + "&tenant=t1", auth: e.signed(usage, 0), status: 401, cause: protocol.Unauthorized},
			{name: "expired ts", path: head1, auth: e.signed(head1, -protocol.ReadSkew-time.Second), status: 401, cause: protocol.Unauthorized, detail: "from the authority's clock"},
			{name: "ts in the future", path: head1, auth: e.signed(head1, protocol.ReadSkew+time.Second), status: 401, cause: protocol.Unauthorized, detail: "from the authority's clock"},
			{name: "revoked key", path: head1, auth: signedBy(revoked, head1, t0), status: 401, cause: protocol.Unauthorized, detail: "revoked"},
			{name: "ts within the skew", path: head1, auth: e.signed(head1, -protocol.ReadSkew+time.Second), status: 200},
			{name: "key revoked only later", path: head1, auth: signedBy(later, head1, t0), status: 200},
			{name: "another node's head", path: "/v1/nodes/" + node2 + "/head", auth: e.signed("/v1/nodes/"+node2+"/head", 0), status: 403, cause: protocol.NodeMismatch, detail: node1},
			{name: "an unknown node's head", path: "/v1/nodes/nobody/head", auth: e.signed("/v1/nodes/nobody/head", 0), status: 403, cause: protocol.NodeMismatch},
			{name: "another node's usage", path: usage + "&node=" + node3, auth: e.signed(usage+"&node="+node3, 0), status: 403, cause: protocol.NodeMismatch},
			{name: "operator: another node's head", path: "/v1/nodes/" + node2 + "/head", auth: "Bearer " + adminToken, status: 200},
			{name: "operator: an unknown node's head", path: "/v1/nodes/nobody/head", auth: "Bearer " + adminToken, status: 404, cause: protocol.NotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				a := e.read(tc.path, tc.auth)
				if a.status != tc.status || (tc.cause != "" && a.Type != problemType(tc.cause)) || !strings.Contains(a.Detail, tc.detail) {
					t.Fatalf("%d %s, want %d %s with %q", a.status, a.body, tc.status, tc.cause, tc.detail)
				}
				challenge := strings.Join(a.header.Values("WWW-Authenticate"), ", ")
				if tc.status == 401 && (!strings.Contains(challenge, protocol.ReadScheme) || !strings.Contains(challenge, "Bearer")) {
					t.Errorf("401 challenges %q, want %s and Bearer", challenge, protocol.ReadScheme)
				}
			})
		}

		// A node reads its own head and usage; without node= its usage
		// read is its own, with node= its own too.
		if a := e.read(head1, e.signed(head1, 0)); a.status != 200 || a.Node != node1 || a.Head != 1 {
			t.Errorf("node-01's own head: %d %s", a.status, a.body)
		}
		for _, path := range []string{usage, usage + "&node=" + node1} {
			a := e.read(path, e.signed(path, 0))
			if a.status != 200 || len(a.report.Rows) != 1 || a.report.Rows[0].Node != node1 || a.report.TotalGPUMs != 60000 {
				t.Errorf("node-01's usage read %s: %d %s, want node-01's 60000 ms only", path, a.status, a.body)
			}
		}
		// The operators read everything.
		if a := e.read(usage, "Bearer "+adminToken); a.status != 200 || len(a.report.Rows) != 2 || a.report.TotalGPUMs != 90000 {
			t.Errorf("operator's usage read: %d %s, want node-01's and node-03's", a.status, a.body)
		}
	})
}

// TestReadsWithoutOperatorToken: an authority without an operator token
// accepts signed reads only, and does not offer Bearer.
func TestReadsWithoutOperatorToken(t *testing.T) {
	key := newKey(t)
	a := authoritytest.New(t, authoritytest.Options{
		Nodes: []authoritytest.Node{{ID: node1, Provider: provider, PublicKey: pub(key), GPUs: []string{gpuA}}},
	})
	get := func(auth string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, a.URL+"/v1/nodes/"+node1+"/head", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth == "" {
			auth = protocol.SignRead(key, signing.KeyID(pub(key)), req.Method, req.URL.RequestURI(), time.Now())
		}
		req.Header.Set("Authorization", auth)
		resp, err := a.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("Bearer " + adminToken); resp.StatusCode != 401 || strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), ","), "Bearer") {
		t.Errorf("bearer token without an operator token configured: %d, challenges %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	if resp := get(""); resp.StatusCode != 200 {
		t.Errorf("signed read on the real clock: %d", resp.StatusCode)
	}
}

func TestNewRefusesAShortOperatorToken(t *testing.T) {
	e := newEnv(t, 0)
	if _, err := server.New(server.Options{Ingester: e.Ingester, Store: e.Store, OperatorToken: []byte("short")}); err == nil {
		t.Fatal("a 5-character operator token was accepted")
	}
}
