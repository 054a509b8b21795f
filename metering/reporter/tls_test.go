package reporter_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/metering/reporter"
)

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS(t *testing.T) {
	pki := authoritytest.NewPKI(t)
	caFile, otherCAFile := pki.CA.CertFile, authoritytest.NewPKI(t).CA.CertFile
	cliCert, cliKey := pki.Client.CertFile, pki.Client.KeyFile

	tests := []struct {
		name              string
		requireClientCert bool
		caFile            string
		certFile, keyFile string
		wantDelivered     bool
		wantErr           string // in Stats.LastError when not delivered
		wantCause         string // Stats.LastErrorCause when not delivered
	}{
		{name: "CA file", caFile: caFile, wantDelivered: true},
		{name: "CA file and client certificate", requireClientCert: true, caFile: caFile,
			certFile: cliCert, keyFile: cliKey, wantDelivered: true},
		{name: "wrong CA", caFile: otherCAFile, wantErr: "certificate", wantCause: "permanent"},
		{name: "system roots do not know the test CA", wantErr: "certificate", wantCause: "permanent"},
		{name: "client certificate missing", requireClientCert: true, caFile: caFile, wantErr: "network", wantCause: "network"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuthorityTLS(t, newKey(t), pki.ServerTLS(tc.requireClientCert))
			g := newAgent(t, a.key)
			g.appendWindows(0, 3)
			opts := g.options(a.URL)
			opts.CAFile, opts.CertFile, opts.KeyFile = tc.caFile, tc.certFile, tc.keyFile
			r := g.reporter(opts)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := r.Flush(ctx)
			if tc.wantDelivered {
				if err != nil {
					t.Fatal(err)
				}
				assertDelivered(t, a, g, 3*recsPerWindow)
				return
			}
			if err == nil {
				t.Fatal("Flush succeeded, want a TLS failure")
			}
			if st := r.Stats(); !strings.Contains(st.LastError, tc.wantErr) || st.ConsecutiveFailures == 0 || st.LastErrorCause != tc.wantCause {
				t.Errorf("stats %+v, want a %s failure mentioning %q", st, tc.wantCause, tc.wantErr)
			}
			if a.head() != 0 {
				t.Errorf("authority head %d, want nothing delivered", a.head())
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	pki := authoritytest.NewPKI(t)
	caFile, keyFile := pki.CA.CertFile, pki.CA.KeyFile
	garbage := writeFile(t, dir, "garbage.pem", []byte("not a certificate\n"))
	missing := filepath.Join(dir, "missing.pem")
	a := newAuthority(t)
	g := newAgent(t, a.key)
	other := newAgent(t, a.key)

	tests := []struct {
		name    string
		edit    func(o *reporter.Options)
		wantErr string
	}{
		{name: "missing CA file", edit: func(o *reporter.Options) { o.CAFile = missing }, wantErr: missing},
		{name: "garbage CA file", edit: func(o *reporter.Options) { o.CAFile = garbage }, wantErr: garbage + " holds no PEM certificate"},
		{name: "missing client certificate", edit: func(o *reporter.Options) { o.CertFile, o.KeyFile = missing, keyFile }, wantErr: missing},
		{name: "garbage client certificate", edit: func(o *reporter.Options) { o.CertFile, o.KeyFile = garbage, keyFile }, wantErr: garbage},
		{name: "certificate without key", edit: func(o *reporter.Options) { o.CertFile = caFile }, wantErr: "must be given together"},
		{name: "TLS files with plain http", edit: func(o *reporter.Options) { o.URL = "http://authority:8443"; o.CAFile = caFile }, wantErr: "plain http"},
		{name: "not a URL", edit: func(o *reporter.Options) { o.URL = "authority:8443" }, wantErr: "want http(s)://host"},
		{name: "URL with a query", edit: func(o *reporter.Options) { o.URL = "https://authority/?x=1" }, wantErr: "no user info, query"},
		{name: "node not the sealer's", edit: func(o *reporter.Options) { o.Node = "node-02" }, wantErr: `node "node-02" is not the sealer's`},
		{name: "no spool", edit: func(o *reporter.Options) { o.Spool = nil }, wantErr: "sealer and spool are required"},
		{name: "no key", edit: func(o *reporter.Options) { o.Key = nil }, wantErr: "signs the reporter's reads"},
		{name: "key not the sealer's", edit: func(o *reporter.Options) { o.Key = newKey(t) }, wantErr: "is not the sealer's key"},
		{name: "retry bounds inverted", edit: func(o *reporter.Options) { o.RetryWaitMin, o.RetryWaitMax = time.Second, time.Millisecond }, wantErr: "below min"},
		{name: "batch too large", edit: func(o *reporter.Options) { o.MaxBatchRecords = 10001 }, wantErr: "max batch records"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := g.options("https://authority.example:8443")
			opts.Spool = other.spool
			tc.edit(&opts)
			_, err := reporter.New(opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		opts := g.options("https://authority.example:8443/")
		opts.CAFile = caFile
		if _, err := reporter.New(opts); err != nil {
			t.Fatal(err)
		}
	})
}
