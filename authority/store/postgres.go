package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL pool bounds: enough for the HTTP server's concurrent ingests
// and reads, few enough that several authority processes and the CLI fit
// in a default max_connections (100).
const (
	pgMaxConns    = 10
	pgMaxIdleTime = 5 * time.Minute
)

// Advisory lock keys. The one-bigint and two-int4 key spaces of
// pg_advisory_xact_lock never overlap, so these cannot collide.
const (
	// pgMigrationLock serializes migrations between processes.
	pgMigrationLock = 0x67706d7472616e73 // "gpmtrans"
	// pgUnitLockSpace is the first key of a unit's lock; the second is
	// unitLockKey(unit).
	pgUnitLockSpace = 0x67706d75 // "gpmu"
)

var postgresDialect = dialect{
	name:      DriverPostgres,
	blobType:  "BYTEA",
	serialKey: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	dollar:    true,
	forUpdate: " FOR UPDATE",
	// A literal: the statement runs before schema_migrations exists, and
	// an untyped parameter would not resolve to bigint by itself.
	lockMigrations: "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(pgMigrationLock, 10) + ")",
	lockUnit:       "SELECT pg_advisory_xact_lock(?::int4, ?::int4)",
	isUnique: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
	},
}

// openPostgres opens a pool on an existing PostgreSQL database and applies
// pending migrations. Isolation is the server's default, READ COMMITTED:
// every write path takes the row or advisory locks it needs (ingest.go,
// registry.go), in one global order, so none can deadlock another.
func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, redact(fmt.Errorf("open store: PostgreSQL DSN: %w", err), dsnSecrets(dsn))
	}
	secrets := append(dsnSecrets(dsn), cfg.Password)
	id := pgID(cfg)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	db.SetConnMaxIdleTime(pgMaxIdleTime)
	s := &Store{w: db, r: db, d: postgresDialect, id: id}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, redact(fmt.Errorf("open store %s: connect: %w", id, err), secrets)
	}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, redact(fmt.Errorf("open store %s: %w", id, err), secrets)
	}
	return s, nil
}

// pgID names the database for logs and errors, without the password.
func pgID(cfg *pgx.ConnConfig) string {
	return "postgres://" + url.PathEscape(cfg.User) + "@" + net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + url.PathEscape(cfg.Database)
}

// kvPassword finds password=... in a key=value DSN, quoted or not.
var kvPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]+)`)

// dsnSecrets returns the passwords written in dsn, in the forms an error
// message might quote them.
func dsnSecrets(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		}
		out = append(out, u.Query()["password"]...)
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		out = append(out, m[1], strings.Trim(m[1], "'"))
	}
	return out
}

// redactedError is err with every secret replaced in its text. It still
// unwraps to err, for errors.Is; callers print Error().
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact hides secrets (and their URL-escaped forms) in err's text. pgx
// already masks passwords in the DSNs it quotes; this does not rely on it.
func redact(err error, secrets []string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s), (&url.URL{User: url.UserPassword("", s)}).User.String()[1:]} {
			if form != "" {
				msg = strings.ReplaceAll(msg, form, "xxxxx")
			}
		}
	}
	return &redactedError{msg: msg, err: err}
}

// unitLockKey is the second key of a unit's advisory lock. Two units may
// share a key: that only serializes them more than needed.
func unitLockKey(unit string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(unit))
	return int32(h.Sum32())
}

// unitLockKeys returns the distinct lock keys of units in ascending order:
// taking them in this order is what keeps two ingests of different nodes
// that share units from waiting on each other in a cycle.
func unitLockKeys(units []string) []int32 {
	seen := map[int32]bool{}
	var keys []int32
	for _, u := range units {
		k := unitLockKey(u)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
