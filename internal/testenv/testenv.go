// Package testenv finds the outside programs and servers some tests need
// (PostgreSQL, promtool, prometheus, lintian, ...).
//
// A plain `go test ./...` on a machine without them skips those tests and
// says why. With GPUMETER_TEST_REQUIRE=1 (set by .ci/run, which installs
// them) a missing one fails the test instead, so CI can never pass by
// skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// RequireEnv is the variable that turns skips into failures.
const RequireEnv = "GPUMETER_TEST_REQUIRE"

// PostgresEnv names a PostgreSQL server tests may use: a URL DSN whose role
// can CREATE DATABASE, e.g.
// postgres://gpumeter:gpumeter@127.0.0.1:5432/gpumeter?sslmode=disable
const PostgresEnv = "GPUMETER_TEST_POSTGRES"

// Required reports whether missing dependencies must fail tests.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// missing skips t, or fails it under GPUMETER_TEST_REQUIRE=1.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(format+" (and %s=1 requires it)", append(args, RequireEnv)...)
	}
	t.Skipf(format+"; or run bash .ci/run, which installs and starts everything", args...)
}

// debianPackage names the Debian package that provides each program a
// test may need, for the skip message.
var debianPackage = map[string]string{
	"prometheus": "prometheus", "promtool": "prometheus", "lintian": "lintian", "debootstrap": "debootstrap",
	"rpm": "rpm", "systemd-analyze": "systemd", "prometheus-node-exporter": "prometheus-node-exporter",
	"go": "golang-go", "gcc": "gcc", "objdump": "binutils", "objcopy": "binutils", "dpkg-deb": "dpkg",
	"chroot": "coreutils",
}

// Tool returns the path of the program name, or skips/fails t.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		how := "to run it, put it in PATH"
		if pkg, ok := debianPackage[name]; ok {
			how = "to run it: apt-get install " + pkg
		}
		missing(t, "%s not found in PATH: %s", name, how)
	}
	return p
}

// PostgresDSN returns the DSN of a new, empty database on the server named
// by GPUMETER_TEST_POSTGRES, dropped when t ends; or skips/fails t.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		missing(t, "%s is not set: to run it, set it to a PostgreSQL URL whose role may create databases, e.g. %s=postgres://gpumeter:gpumeter@127.0.0.1:5432/gpumeter?sslmode=disable", PostgresEnv, PostgresEnv)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		missing(t, "PostgreSQL at %s does not answer: %v: start it (pg_ctlcluster <version> main start) or point %s elsewhere", u.Redacted(), err, PostgresEnv)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "gpumeter_test_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() { dropDatabase(t, admin, name) })
	u.Path = "/" + name
	return u.String()
}

// dropDatabase drops a test database. WITH (FORCE) ends the test's own
// leftover sessions, but a non-superuser may not end an autovacuum worker
// that happens to be in the database (SQLSTATE 42501), nor drop it while
// one is (55006): those pass in a moment, so retry until a deadline.
func dropDatabase(t testing.TB, admin *sql.DB, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		cancel()
		var pe *pgconn.PgError
		busy := errors.As(err, &pe) && (pe.Code == "42501" || pe.Code == "55006")
		switch {
		case err == nil:
			return
		case !busy || time.Now().After(deadline):
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		time.Sleep(100 * time.Millisecond) // poll: the autovacuum worker leaves on its own
	}
}
