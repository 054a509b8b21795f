package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/console"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

// serveWithAdmin runs serveNodes (the nodes' API) and, when admin.listen
// is set, the operator API on its own listener beside it, until ctx is
// done or either stops; then it stops the other and waits for it.
//
// The operator API uses the tls section's certificate when there is one,
// never its client CA (operators hold the bearer token, not node
// certificates); without TLS it listens on loopback only, since the token
// would otherwise cross the network in clear.
func serveWithAdmin(ctx context.Context, cfg config.Config, st *store.Store, log *slog.Logger, serveNodes func(context.Context) error) error {
	if cfg.Admin.Listen == "" {
		return serveNodes(ctx)
	}
	tlsFiles := server.TLSFiles{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile}
	ln, h, err := listenAdmin(cfg, st, log, tlsFiles)
	if err != nil {
		// Serve the nodes' API on a done context: it closes the listener
		// the caller opened for it, and nothing else happens.
		done, stop := context.WithCancel(ctx)
		stop()
		return errors.Join(err, serveNodes(done))
	}
	log.Info("operator API serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", tlsFiles.Enabled()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adminErr := make(chan error, 1)
	go func() {
		err := server.Serve(ctx, ln, h, tlsFiles, 30*time.Second)
		cancel() // the nodes' API stops with it
		adminErr <- err
	}()
	err = serveNodes(ctx)
	cancel()
	return errors.Join(err, <-adminErr)
}

// listenAdmin checks the operator API's settings, reads its token and
// opens its listener. The web console (docs/console.md) shares it, under
// /console/: the same TLS and loopback rule; the operators' token signs
// in a program officer there.
func listenAdmin(cfg config.Config, st *store.Store, log *slog.Logger, tlsFiles server.TLSFiles) (net.Listener, http.Handler, error) {
	if !tlsFiles.Enabled() && !config.IsLoopback(cfg.Admin.Listen) {
		return nil, nil, fmt.Errorf("admin.listen %s: without tls (cert_file, key_file) the operator API listens only on a loopback address", cfg.Admin.Listen)
	}
	token, err := server.LoadAdminToken(cfg.Admin.TokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("admin.token_file: %w", err)
	}
	adm, err := server.NewAdmin(server.AdminOptions{Store: st, Token: token, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	con, err := console.New(console.Options{Store: st, OperatorToken: token, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, con.Handler())
	mux.Handle("/", adm.Handler())
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("admin.listen on %s: %w", cfg.Admin.Listen, err)
	}
	return ln, mux, nil
}
