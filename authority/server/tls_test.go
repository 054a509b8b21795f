package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
)

func TestServeTLSRequiresClientCert(t *testing.T) {
	e := newEnv(t, 0)
	pki := authoritytest.NewPKI(t)
	files := server.TLSFiles{CertFile: pki.Server.CertFile, KeyFile: pki.Server.KeyFile, ClientCAFile: pki.CA.CertFile}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, e.Server.Handler(), files, 5*time.Second) }()

	roots := pki.Pool()
	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{
		{"with client certificate", []tls.Certificate{pki.Client.Pair}, true},
		{"without client certificate", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: tc.certs, MinVersion: tls.VersionTLS12}}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + ln.Addr().String() + "/healthz")
			if resp != nil {
				resp.Body.Close()
			}
			if ok := err == nil && resp.StatusCode == 200; ok != tc.wantOK {
				t.Fatalf("ok = %v (err %v), want %v", ok, err, tc.wantOK)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
}
