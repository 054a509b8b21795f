package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gpumeter/gpumeter/internal/tlsfile"
)

// TLSFiles names the serving certificate and, optionally, the CA whose
// client certificates are required. All empty: plain HTTP.
type TLSFiles struct {
	CertFile, KeyFile, ClientCAFile string
}

// Enabled reports whether TLS is configured.
func (t TLSFiles) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// tlsConfig builds the server TLS config; with a client CA, clients must
// present a certificate it signed.
func (t TLSFiles) tlsConfig() (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file must be given together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pool, err := tlsfile.CertPool(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Serve serves h on ln until ctx is done, then shuts down gracefully
// (in-flight ingests finish their transaction) within grace.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, t TLSFiles, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	if t.Enabled() {
		cfg, err := t.tlsConfig()
		if err != nil {
			return err
		}
		srv.TLSConfig = cfg
	}
	errc := make(chan error, 1)
	go func() {
		if t.Enabled() {
			errc <- srv.ServeTLS(ln, t.CertFile, t.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shut down server on %s: %w", ln.Addr(), err)
	}
	return nil
}
