package reporter_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/reporter"
)

// issued is a certificate with its key, as PEM.
type issued struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// issue makes a certificate for 127.0.0.1 signed by parent (self-signed
// when parent is nil).
func issue(t *testing.T, cn string, parent *issued, isCA bool) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: isCA, BasicConstraintsValid: true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, "authority CA", nil, true)
	otherCA := issue(t, "other CA", nil, true)
	srv := issue(t, "authority", &ca, false)
	cli := issue(t, "node-01", &ca, false)
	caFile := writeFile(t, dir, "ca.pem", ca.certPEM)
	otherCAFile := writeFile(t, dir, "other-ca.pem", otherCA.certPEM)
	cliCert, cliKey := writeFile(t, dir, "cli.pem", cli.certPEM), writeFile(t, dir, "cli.key", cli.keyPEM)
	srvPair, err := tls.X509KeyPair(srv.certPEM, srv.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)

	tests := []struct {
		name              string
		requireClientCert bool
		caFile            string
		certFile, keyFile string
		wantDelivered     bool
		wantErr           string // in Stats.LastError when not delivered
	}{
		{name: "CA file", caFile: caFile, wantDelivered: true},
		{name: "CA file and client certificate", requireClientCert: true, caFile: caFile,
			certFile: cliCert, keyFile: cliKey, wantDelivered: true},
		{name: "wrong CA", caFile: otherCAFile, wantErr: "certificate"},
		{name: "system roots do not know the test CA", wantErr: "certificate"},
		{name: "client certificate missing", requireClientCert: true, caFile: caFile, wantErr: "network"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuthorityUnstarted(t)
			a.http.TLS = &tls.Config{Certificates: []tls.Certificate{srvPair}, MinVersion: tls.VersionTLS12}
			if tc.requireClientCert {
				a.http.TLS.ClientCAs, a.http.TLS.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
			}
			a.http.StartTLS()
			g := newAgent(t, a.key)
			g.appendWindows(0, 3)
			opts := g.options(a.http.URL)
			opts.CAFile, opts.CertFile, opts.KeyFile = tc.caFile, tc.certFile, tc.keyFile
			r := g.reporter(opts)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
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
			if st := r.Stats(); !strings.Contains(st.LastError, tc.wantErr) || st.ConsecutiveFailures == 0 {
				t.Errorf("stats %+v, want a failure mentioning %q", st, tc.wantErr)
			}
			if a.head() != 0 {
				t.Errorf("authority head %d, want nothing delivered", a.head())
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, "ca", nil, true)
	caFile := writeFile(t, dir, "ca.pem", ca.certPEM)
	garbage := writeFile(t, dir, "garbage.pem", []byte("not a certificate\n"))
	keyFile := writeFile(t, dir, "cli.key", ca.keyPEM)
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
