package authoritytest_test

import (
	"crypto/ed25519"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestAuthorityAnswers: the authority answers /healthz over plain HTTP and
// over TLS, registers its nodes, and stops answering while down.
func TestAuthorityAnswers(t *testing.T) {
	pki := authoritytest.NewPKI(t)
	pub := testutil.NewPublicKey(t)
	tests := []struct {
		name   string
		tls    *tls.Config
		client *tls.Config // nil: the httptest server's own client
		down   bool
		wantOK bool
	}{
		{name: "plain HTTP", wantOK: true},
		{name: "plain HTTP while down", down: true},
		{name: "TLS, CA trusted", tls: pki.ServerTLS(false),
			client: &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12}, wantOK: true},
		{name: "TLS, client certificate required and given", tls: pki.ServerTLS(true),
			client: &tls.Config{RootCAs: pki.Pool(), Certificates: []tls.Certificate{pki.Client.Pair}, MinVersion: tls.VersionTLS12}, wantOK: true},
		{name: "TLS, client certificate required and missing", tls: pki.ServerTLS(true),
			client: &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12}},
		{name: "TLS, another PKI's CA", tls: pki.ServerTLS(false),
			client: &tls.Config{RootCAs: authoritytest.NewPKI(t).Pool(), MinVersion: tls.VersionTLS12}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := authoritytest.New(t, authoritytest.Options{
				Nodes: []authoritytest.Node{{ID: "node-01", Provider: "example-cloud", PublicKey: pub, GPUs: []string{"GPU-00000000-0000-4000-8000-000000000001"}}},
				TLS:   tc.tls,
			})
			if h := a.Head(t, "node-01"); h != 0 {
				t.Fatalf("head %d of a fresh node, want 0", h)
			}
			a.SetDown(tc.down)
			c := a.HTTP.Client()
			if tc.client != nil {
				tr := &http.Transport{TLSClientConfig: tc.client}
				defer tr.CloseIdleConnections()
				c = &http.Client{Transport: tr}
			}
			c.Timeout = 10 * time.Second
			resp, err := c.Get(a.URL + "/healthz")
			if resp != nil {
				resp.Body.Close()
			}
			if ok := err == nil && resp.StatusCode == http.StatusOK; ok != tc.wantOK {
				t.Fatalf("ok = %v (err %v), want %v", ok, err, tc.wantOK)
			}
		})
	}
}

// TestAuthorityOnEachDriver: the authority runs on each store driver,
// stores what it accepts there, and says where its database is.
func TestAuthorityOnEachDriver(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		key := testutil.NewKey(t)
		pub := key.Public().(ed25519.PublicKey)
		a := authoritytest.New(t, authoritytest.Options{
			Driver: driver,
			Nodes:  []authoritytest.Node{{ID: "node-01", Provider: "example-cloud", PublicKey: pub, GPUs: []string{"GPU-00000000-0000-4000-8000-000000000001"}}},
		})
		if got := a.Store.Driver(); got != driver {
			t.Errorf("store driver %q, want %q", got, driver)
		}
		if (a.DBPath != "") != (driver == store.DriverSQLite) || (a.DSN != "") != (driver == store.DriverPostgres) {
			t.Errorf("DBPath %q, DSN %q for driver %s", a.DBPath, a.DSN, driver)
		}
		if h := a.Head(t, "node-01"); h != 0 {
			t.Fatalf("head %d of a fresh node, want 0", h)
		}
		// A read of the node's head, signed with its key.
		req, err := http.NewRequest(http.MethodGet, a.URL+"/v1/nodes/node-01/head", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", protocol.SignRead(key, signing.KeyID(pub), req.Method, req.URL.RequestURI(), time.Now()))
		resp, err := a.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("head: %d", resp.StatusCode)
		}
	})
}
