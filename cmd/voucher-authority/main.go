// Command voucher-authority is the reference voucher authority: it serves
// the delivery protocol (serve), keeps the node registry (node register,
// key rotate, key revoke) and answers usage and head queries from the
// database (usage, head).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `voucher-authority is the reference voucher authority for gpumeter.

Usage:
  voucher-authority serve --config FILE
  voucher-authority node register --db DB --id ID --provider P --public-key B64
                    --gpu UUID[=MODEL] [--gpu ...] [--model MODEL] [--since TIME]
  voucher-authority node add-gpu --db DB --id ID --gpu UUID[=MODEL] [--gpu ...] [--model MODEL] [--since TIME]
  voucher-authority models [--format table|json]
  voucher-authority key rotate --db DB --node ID --public-key B64 [--active-from TIME]
  voucher-authority key revoke --db DB --key-id ID
  voucher-authority usage --db DB [--tenant T] [--node ID] --from RFC3339 --to RFC3339
  voucher-authority head --db DB --node ID
` + coverageUsage + `  voucher-authority version

DB is the authority's database: a SQLite file (the config's store.path), or
a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE?sslmode=... (the
config's store.dsn). Give the PostgreSQL password in PGPASSWORD or
~/.pgpass rather than in the URL, where other users can see it in ps.
` + billingUsage + auditUsage

// dbUsage is the help text of every --db flag.
const dbUsage = "database: a SQLite file, or a postgres:// URL (password from PGPASSWORD or ~/.pgpass)"

// Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line; it is main without the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	sub := func(n int) []string { return args[n:] }
	switch {
	case args[0] == "serve":
		return cmdServe(ctx, sub(1), stderr)
	case args[0] == "node" && len(args) > 1 && args[1] == "register":
		return cmdNodeRegister(ctx, sub(2), stdout, stderr)
	case args[0] == "node" && len(args) > 1 && args[1] == "add-gpu":
		return cmdNodeAddGPU(ctx, sub(2), stdout, stderr)
	case args[0] == "models":
		return cmdModels(sub(1), stdout, stderr)
	case args[0] == "key" && len(args) > 1 && args[1] == "rotate":
		return cmdKeyRotate(ctx, sub(2), stdout, stderr)
	case args[0] == "key" && len(args) > 1 && args[1] == "revoke":
		return cmdKeyRevoke(ctx, sub(2), stdout, stderr)
	case args[0] == "usage":
		return cmdUsage(ctx, sub(1), stdout, stderr)
	case args[0] == "head":
		return cmdHead(ctx, sub(1), stdout, stderr)
	case args[0] == "coverage":
		return cmdCoverage(ctx, sub(1), stdout, stderr)
	case billingCommands[args[0]]:
		return cmdBilling(ctx, args, stdout, stderr)
	case args[0] == "audit" || args[0] == "review":
		return cmdAudit(ctx, args, stdout, stderr)
	case args[0] == "version":
		fmt.Fprintln(stdout, version)
		return exitOK
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// parse parses fs and refuses positional arguments; a false return is a
// usage error already reported.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false
	}
	return true
}

// required reports the first empty required flag.
func required(stderr io.Writer, cmd string, flags map[string]string) bool {
	for name, v := range flags {
		if v == "" {
			fmt.Fprintf(stderr, "%s: --%s is required\n", cmd, name)
			return false
		}
	}
	return true
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "/etc/voucher-authority/authority.yaml", "configuration file")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("voucher authority stopped", slog.Any("err", err))
		return exitFailure
	}
	return exitOK
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	st, err := store.Open(ctx, cfg.Store.Driver, cfg.Store.Source())
	if err != nil {
		return err
	}
	defer st.Close()
	in, err := ingest.New(ingest.Options{Store: st, Skew: cfg.ClockSkew,
		Limits: ingest.Limits{MaxWindow: cfg.MaxWindow, MaxMergeWindow: cfg.MaxMergeWindow}})
	if err != nil {
		return err
	}
	token, err := readToken(cfg, log)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{Ingester: in, Store: st, Logger: log, MaxBodyBytes: cfg.MaxBodyBytes, OperatorToken: token})
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

// withStore opens the database named by a --db value (dbSource) for a
// registry or query command.
func withStore(ctx context.Context, db string, stderr io.Writer, fn func(st *store.Store) error) int {
	driver, source := dbSource(db)
	st, err := store.Open(ctx, driver, source)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	err = fn(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	return exitOK
}

// dbSource says which store a --db value names: a postgres:// or
// postgresql:// URL is PostgreSQL, anything else a SQLite file (as --db
// always was).
func dbSource(db string) (driver, source string) {
	if l := strings.ToLower(db); strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://") {
		return store.DriverPostgres, db
	}
	return store.DriverSQLite, db
}
