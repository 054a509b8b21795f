// Package authproc runs the real `voucher-authority serve` binary as a
// child process for the bench, on SQLite or on a PostgreSQL database it
// creates for the run and drops afterwards.
//
// The bench measures that process, as an operator runs it: this package
// only writes its config, waits for it to answer and stops it. It must
// never leave a process or a bench database behind on a normal return.
package authproc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/gpumeter/gpumeter/authority/store"
)

// Database is where a run's authority keeps its data.
type Database struct {
	Driver string // "sqlite" or "postgres"
	Source string // the SQLite file, or the PostgreSQL DSN
	drop   func(context.Context) error
}

// SQLite is a fresh SQLite file in dir.
func SQLite(dir string) Database {
	return Database{Driver: "sqlite", Source: filepath.Join(dir, "authority.db")}
}

// CreatePostgres creates an empty database on the server adminDSN names
// (its role must be allowed to CREATE DATABASE). Drop removes it.
func CreatePostgres(ctx context.Context, adminDSN string) (Database, error) {
	u, err := url.Parse(adminDSN)
	if err != nil {
		return Database{}, fmt.Errorf("create bench database: admin DSN: %w", err)
	}
	admin, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return Database{}, fmt.Errorf("create bench database on %s: %w", u.Redacted(), err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "gpumeter_bench_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		return Database{}, fmt.Errorf("create bench database on %s: %w", u.Redacted(), err)
	}
	u.Path = "/" + name
	return Database{Driver: "postgres", Source: u.String(), drop: func(ctx context.Context) error {
		defer func() { _ = admin.Close() }()
		return dropDatabase(ctx, admin, name)
	}}, nil
}

// dropDatabase drops name once the bench's own connections are gone. A
// plain DROP makes an autovacuum worker on the database exit (and waits
// for it), where WITH (FORCE) would fail unless the role may signal a
// superuser's backend; FORCE is the fallback for a session left open.
func dropDatabase(ctx context.Context, admin *sql.DB, name string) error {
	var err error
	for attempt := range 20 {
		stmt := "DROP DATABASE IF EXISTS " + name
		if attempt%2 == 1 {
			stmt += " WITH (FORCE)"
		}
		if _, err = admin.ExecContext(ctx, stmt); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop bench database %s: %w (%v)", name, err, ctx.Err())
		case <-time.After(500 * time.Millisecond): // sessions closing, autovacuum exiting
		}
	}
	return fmt.Errorf("drop bench database %s: %w", name, err)
}

// Drop removes a database CreatePostgres made; for SQLite it does
// nothing (the file lives in the caller's directory).
func (d Database) Drop(ctx context.Context) error {
	if d.drop == nil {
		return nil
	}
	return d.drop(ctx)
}

// SQLDriver is the database/sql driver name for d ("sqlite" is registered
// by the authority's store package, "pgx" by this one).
func (d Database) SQLDriver() string {
	if d.Driver == "postgres" {
		return "pgx"
	}
	return "sqlite"
}

// Rebind writes '?' placeholders as $1, $2, ... for PostgreSQL.
func (d Database) Rebind(q string) string {
	if d.Driver != "postgres" {
		return q
	}
	return store.DollarPlaceholders(q)
}

// Process is a running authority.
type Process struct {
	URL     string // http://127.0.0.1:port
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// Start runs bin serve on db, listening on a free loopback port, with its
// config and log in dir, and returns once /healthz answers 200.
func Start(ctx context.Context, bin, dir string, db Database) (*Process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	store := fmt.Sprintf("{driver: sqlite, path: %q}", db.Source)
	if db.Driver == "postgres" {
		if store, err = postgresStore(db.Source, dir); err != nil {
			return nil, err
		}
	}
	cfg := fmt.Sprintf("listen: %s\nstore: %s\nlog: {level: warn}\n", addr, store)
	cfgPath := filepath.Join(dir, "authority.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("write authority config: %w", err)
	}
	p := &Process{URL: "http://" + addr, logPath: filepath.Join(dir, "authority.log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("create authority log: %w", err)
	}
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	p.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(ctx); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// postgresStore is the config's store section for dsn, the way an
// operator writes it: the password out of the DSN, in a 0600 file.
func postgresStore(dsn, dir string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL DSN: %w", err)
	}
	pw, ok := u.User.Password()
	if !ok {
		return fmt.Sprintf("{driver: postgres, dsn: %q}", u.String()), nil
	}
	u.User = url.User(u.User.Username())
	pwFile := filepath.Join(dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write PostgreSQL password file: %w", err)
	}
	return fmt.Sprintf("{driver: postgres, dsn: %q, password_file: %q}", u.String(), pwFile), nil
}

// Pid is the authority's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

func (p *Process) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(p.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("authority exited before answering (%v): %s", p.waitErr, p.LogTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond): // poll period
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("authority at %s did not answer /healthz within 60 s: %s", p.URL, p.LogTail())
		}
	}
}

// Stop sends SIGTERM and waits (SIGKILL after 20 s). An exit other than
// a clean one after SIGTERM is an error carrying the log's tail.
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("authority had exited (%v): %s", p.waitErr, p.LogTail())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("authority did not stop within 20 s of SIGTERM: %s", p.LogTail())
	}
	if p.waitErr != nil {
		return fmt.Errorf("authority stopped with %v: %s", p.waitErr, p.LogTail())
	}
	return nil
}

// LogTail is the last lines of the authority's log, for errors.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr is a loopback address with a port the kernel just handed out.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return "", err
	}
	return addr, nil
}
