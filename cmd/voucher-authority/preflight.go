package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/server"
	_ "github.com/gpumeter/gpumeter/authority/store" // the sqlite driver
)

// finding is one result of the preflight: the config field it is about,
// what is wrong and how to fix it.
type finding struct {
	field   string // "" for a config file error, which names its line itself
	msg     string
	warning bool
}

func (f finding) String() string {
	kind := "error"
	if f.warning {
		kind = "warning"
	}
	if f.field == "" {
		return kind + ": " + f.msg
	}
	return kind + ": " + f.field + ": " + f.msg
}

// printFindings prints findings to w, one a line, and reports whether one
// is an error.
func printFindings(w io.Writer, fs []finding) (failed bool) {
	for _, f := range fs {
		fmt.Fprintln(w, f)
		failed = failed || !f.warning
	}
	return failed
}

// pgConnectTimeout bounds check-config's connection to PostgreSQL.
const pgConnectTimeout = 10 * time.Second

// preflight runs the checks of serve's configuration that need no
// listener: the file (config.Load: YAML, values, listen addresses, log
// settings, the password file), then the store, the TLS files and the
// operators' token. connect also connects to PostgreSQL: check-config
// does; serve does not, since a database that is not up yet is a failure
// a restart may cure, not a configuration error.
func preflight(ctx context.Context, path string, connect bool) (config.Config, []finding) {
	cfg, err := config.Load(path)
	if err != nil {
		return cfg, []finding{{msg: err.Error() + fixFor(err)}}
	}
	var out []finding
	fail := func(field, format string, args ...any) {
		out = append(out, finding{field: field, msg: fmt.Sprintf(format, args...)})
	}
	warn := func(field, format string, args ...any) {
		out = append(out, finding{field: field, msg: fmt.Sprintf(format, args...), warning: true})
	}
	switch cfg.Store.Driver {
	case config.DriverSQLite:
		checkSQLite(ctx, cfg.Store.Path, fail)
	case config.DriverPostgres:
		if connect {
			checkPostgres(ctx, cfg.Store, fail)
		}
	}
	checkTLS(cfg.TLS, fail)
	checkLog(cfg, connect, fail, warn)
	if cfg.Admin.Listen != "" {
		if _, err := server.LoadAdminToken(cfg.Admin.TokenFile); err != nil {
			fail("admin.token_file", "%v; create it with: install -m 600 -o voucher-authority /dev/null %[2]s && openssl rand -hex 32 > %[2]s", err, cfg.Admin.TokenFile)
		}
	}
	// Placeholders left from configs/authority.yaml's examples.
	if u, err := url.Parse(cfg.Store.DSN); err == nil && cfg.Store.DSN != "" && isPlaceholder(u.Hostname()) {
		warn("store.dsn", "host %q is the shipped example's placeholder: set your PostgreSQL host", u.Hostname())
	}
	for field, v := range map[string]string{"tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile,
		"tls.client_ca_file": cfg.TLS.ClientCAFile} {
		if isPlaceholder(v) {
			warn(field, "%q is the shipped example's placeholder: set your own file", v)
		}
	}
	if cfg.AllowPlaintext && cfg.TLS.CertFile == "" && !config.IsLoopback(cfg.Listen) {
		warn("allow_plaintext", "listen %s serves plain HTTP off loopback: tenant names and usage cross the network in clear (meant only behind a TLS-terminating proxy)", cfg.Listen)
	}
	sortFindings(out)
	return cfg, out
}

// sortFindings puts errors before warnings, each in field order, so the
// output does not depend on map order.
func sortFindings(fs []finding) {
	less := func(a, b finding) bool {
		if a.warning != b.warning {
			return !a.warning
		}
		return a.field < b.field
	}
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && less(fs[j], fs[j-1]); j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// isPlaceholder reports a value copied from the shipped example's
// comments (hosts and files under example names).
func isPlaceholder(v string) bool {
	return strings.Contains(strings.ToLower(v), "example")
}

// fixFor adds a fix to a config.Load error where the error alone does not
// say one.
func fixFor(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "; give the file with --config (the package installs " + defaultConfig + ")"
	}
	return ""
}

// checkSQLite: the database's directory exists and is writable (SQLite
// writes its WAL and lock files beside it), and the file, if present,
// opens as a database we may write.
func checkSQLite(ctx context.Context, path string, fail func(field, format string, args ...any)) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		fail("store.path", "directory %s: %v; create it: install -d -o voucher-authority -m 0750 %s", dir, err, dir)
		return
	case !fi.IsDir():
		fail("store.path", "%s is not a directory; set store.path to a file in a directory", dir)
		return
	}
	probe, err := os.CreateTemp(dir, ".check-config-*")
	if err != nil {
		fail("store.path", "directory %s is not writable: %v; make it writable by the user serve runs as (chown voucher-authority %s)", dir, err, dir)
		return
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return // serve creates it
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fail("store.path", "%v; make the file writable by the user serve runs as", err)
		return
	}
	_ = f.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err == nil {
		var n int
		err = db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n)
		_ = db.Close()
	}
	if err != nil {
		fail("store.path", "%s does not open as a SQLite database: %v; point store.path at the authority's database, or move the file away", path, err)
	}
}

// checkPostgres connects to the database once.
func checkPostgres(ctx context.Context, s config.Store, fail func(field, format string, args ...any)) {
	ctx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
	defer cancel()
	pc, err := pgx.ParseConfig(s.Source())
	if err == nil {
		var conn *pgx.Conn
		if conn, err = pgx.ConnectConfig(ctx, pc); err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(context.Background())
		}
	}
	if err != nil {
		msg := err.Error()
		if pw := string(s.Password); pw != "" {
			for _, form := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw)} {
				msg = strings.ReplaceAll(msg, form, "xxxxx")
			}
		}
		fail("store.dsn", "cannot connect: %s; check that PostgreSQL runs and accepts this role from this host (pg_hba.conf), and store.password_file", msg)
	}
}

// checkTLS: the certificate and key are readable and a matching pair, the
// client CA holds certificates.
func checkTLS(t config.TLS, fail func(field, format string, args ...any)) {
	if t.CertFile != "" {
		certPEM, cerr := os.ReadFile(t.CertFile)
		if cerr != nil {
			fail("tls.cert_file", "%v; give a readable PEM certificate (chain)", cerr)
		}
		keyPEM, kerr := os.ReadFile(t.KeyFile)
		if kerr != nil {
			fail("tls.key_file", "%v; give the certificate's PEM private key, readable by the user serve runs as", kerr)
		}
		if cerr == nil && kerr == nil {
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				fail("tls.key_file", "with tls.cert_file: %v; give the key the certificate was issued for", err)
			}
		}
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			fail("tls.client_ca_file", "%v; give a readable PEM CA bundle", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			fail("tls.client_ca_file", "%s holds no PEM certificate; give the CA bundle that signed the nodes' client certificates", t.ClientCAFile)
		}
	}
}
