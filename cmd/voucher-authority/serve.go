package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/logging"
)

// defaultConfig is where the package installs the configuration.
const defaultConfig = "/etc/voucher-authority/authority.yaml"

func configFlag(c *cobra.Command) *string {
	return c.Flags().String("config", defaultConfig, "configuration file")
}

func serveCmd() *cobra.Command {
	c := leaf("serve", "serve the delivery protocol, and the operator API when admin.listen is set")
	c.Long = `serve runs the nodes' API (and the operator API when admin.listen is set)
until SIGTERM or SIGINT. It first runs check-config's checks, except
connecting to PostgreSQL (a database not up yet is a runtime failure, exit
1, that a restart may cure); any failure exits 78 before anything listens.`
	cfgPath := configFlag(c)
	return action(c, func(ctx context.Context, _, stderr io.Writer) int {
		cfg, findings := preflight(ctx, *cfgPath, false)
		if printFindings(stderr, findings) {
			return exitConfig
		}
		level, _ := logging.ParseLevel(cfg.Log.Level) // validated by config.Load
		log := logging.New(stderr, cfg.Log.Format, level)
		ctx, stop := logging.NotifyContext(ctx, log, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, cfg, log); err != nil {
			log.Error("voucher authority stopped", slog.Any("err", err))
			return exitFailure
		}
		return exitOK
	})
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	st, err := store.Open(ctx, cfg.Store.Driver, cfg.Store.Source())
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("close store", "err", err)
		}
	}()
	in, err := ingest.New(ingest.Options{Store: st, Skew: cfg.ClockSkew,
		Limits: ingest.Limits{MaxWindow: cfg.MaxWindow, MaxMergeWindow: cfg.MaxMergeWindow}})
	if err != nil {
		return err
	}
	token, err := readToken(cfg, log)
	if err != nil {
		return err
	}
	logKey, err := startLog(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{Ingester: in, Store: st, Logger: log, MaxBodyBytes: cfg.MaxBodyBytes, OperatorToken: token,
		LogSigner: logKey, Admission: server.Admission{MaxConcurrent: cfg.Admission.MaxConcurrent,
			MaxWait: cfg.Admission.MaxWait, RetryAfter: cfg.Admission.RetryAfter}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	tlsFiles := server.TLSFiles{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, ClientCAFile: cfg.TLS.ClientCAFile}
	log.Info("voucher authority serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", tlsFiles.Enabled()),
		slog.Bool("client_certs", cfg.TLS.ClientCAFile != ""), slog.String("store", st.String()), slog.String("version", version))
	err = serveWithAdmin(ctx, cfg, st, log, func(ctx context.Context) error {
		return server.Serve(ctx, ln, srv.Handler(), tlsFiles, 30*time.Second)
	})
	if err == nil {
		log.Info("voucher authority stopped")
	}
	return err
}
