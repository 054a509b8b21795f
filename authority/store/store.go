package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gpumeter/gpumeter/internal/tlog"
)

// The drivers Open knows.
const (
	// DriverSQLite is modernc.org/sqlite: one file, embedded.
	DriverSQLite = "sqlite"
	// DriverPostgres is PostgreSQL through pgx (postgres.go).
	DriverPostgres = "postgres"
)

// Store is the authority's database. Safe for concurrent use, and by
// several processes on one database.
type Store struct {
	// w is the pool that writes. On SQLite it has one connection, so
	// writes of this process are serialized; BEGIN IMMEDIATE serializes
	// them against other processes (the CLI) too, without read-to-write
	// upgrade deadlocks. On PostgreSQL w and r are one pool: row locks
	// (dialect.forUpdate) and advisory locks order the writers.
	w *sql.DB
	// r serves reads concurrently (WAL lets them run beside the writer).
	r  *sql.DB
	d  dialect
	id string // where, for errors and logs: never a password
	// refusalCap bounds the audit trail per node; 0 is
	// MaxRefusalsPerNode (tests lower it).
	refusalCap int
	// logSigner is the key that signs checkpoints once StartLog ran
	// (log.go).
	logSigner atomic.Pointer[tlog.Signer]
	// txs holds each open write transaction's state: its connection,
	// queued statements and queued log leaves (*sql.Tx -> *txState,
	// pipeline.go).
	txs sync.Map
}

// dialect is what differs between SQL engines: placeholders, the byte
// string type, how a unique violation looks and the locks that SQLite's
// one writer makes unnecessary.
type dialect struct {
	name string
	// blobType replaces {{bytes}} in migrations.
	blobType string
	// serialKey replaces {{serial}} in migrations: a BIGINT primary key
	// the database assigns, increasing, never reused.
	serialKey string
	// dollar rebinds '?' to $1, $2, ... (PostgreSQL).
	dollar bool
	// forUpdate is appended to a SELECT that reads rows a transaction will
	// change (" FOR UPDATE" on PostgreSQL; SQLite's BEGIN IMMEDIATE already
	// holds the database's one write lock, so "" there).
	forUpdate string
	// lockMigrations, when set, is run first in every migration
	// transaction: it serializes migrations between processes (SQLite's
	// write lock already does).
	lockMigrations string
	// lockUnit, when set, takes a transaction-scoped lock on one unit's
	// windows, given two int32 keys (see lockUnits).
	lockUnit string
	isUnique func(error) bool
}

var sqliteDialect = dialect{
	name:      DriverSQLite,
	blobType:  "BLOB",
	serialKey: "INTEGER PRIMARY KEY AUTOINCREMENT",
	isUnique: func(err error) bool {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return false
		}
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
}

// rebind turns '?' placeholders into the dialect's.
func (d dialect) rebind(q string) string {
	if !d.dollar {
		return q
	}
	return DollarPlaceholders(q)
}

// DollarPlaceholders writes q's '?' placeholders as PostgreSQL's $1, $2,
// ... Statements here never hold a literal '?' in a string, so a plain
// scan is exact.
func DollarPlaceholders(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Open opens the database and applies pending migrations. driver is
// DriverSQLite, with source the database file (created if missing), or
// DriverPostgres, with source a postgres:// URL or key=value DSN naming an
// existing database. Errors never carry the password.
func Open(ctx context.Context, driver, source string) (*Store, error) {
	switch driver {
	case DriverSQLite:
		return openSQLite(ctx, source)
	case DriverPostgres:
		return openPostgres(ctx, source)
	}
	return nil, fmt.Errorf("open store: driver %q not supported (want %q or %q)", driver, DriverSQLite, DriverPostgres)
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.HasPrefix(path, ":memory:") {
		// Two pools on one in-memory database would be two databases.
		return nil, fmt.Errorf("open store: sqlite needs a file path, got %q", path)
	}
	if err := enableWAL(ctx, path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	wq := url.Values{}
	for k, v := range q {
		wq[k] = append([]string(nil), v...)
	}
	wq.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", "file:"+path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{w: w, r: r, d: sqliteDialect, id: path}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// enableWAL puts the database file in WAL mode (persistent in the file)
// before the pools open. Switching a new database to WAL needs an
// exclusive lock, and SQLite answers SQLITE_BUSY at once instead of
// waiting the busy timeout when another connection holds any lock, so
// processes opening a new database together would fail. Once the file is
// in WAL mode, the pools' journal_mode(WAL) pragma changes nothing and
// takes no lock. So: retry the switch until a deadline.
func enableWAL(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode=WAL`).Scan(&mode)
		var se *sqlite.Error
		busy := errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
		switch {
		case err == nil && strings.EqualFold(mode, "wal"):
			return nil
		case err == nil:
			return fmt.Errorf("journal_mode is %q after asking for WAL", mode)
		case !busy || time.Now().After(deadline):
			return fmt.Errorf("enable WAL: %w", err)
		}
		select { // poll: the other opener's lock is held for milliseconds
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close closes the pools.
func (s *Store) Close() error {
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.w.Close(), s.r.Close())
}

// String says which database this is, for logs: the SQLite file, or
// postgres://user@host:port/database (never a password).
func (s *Store) String() string { return s.id }

// Driver is the store's driver, DriverSQLite or DriverPostgres.
func (s *Store) Driver() string { return s.d.name }

// writeTx runs fn in one write transaction and commits if fn returns nil.
// If fn returns a *keepError, the transaction is committed and the wrapped
// error returned (a rejection that must still record something: a fork).
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	// On a connection of its own, which the queued statements' batch uses
	// (pipeline.go).
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction on %s: %w", s.id, err)
	}
	defer func() { _ = conn.Close() }()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction on %s: %w", s.id, err)
	}
	s.txs.Store(tx, &txState{conn: conn})
	defer s.txs.Delete(tx)
	ferr := fn(tx)
	var keep *keepError
	if ferr != nil && !errors.As(ferr, &keep) {
		_ = tx.Rollback()
		return ferr
	}
	// What fn queued (pipeline.go), then the log's leaves, last, under its
	// lock (log.go).
	if err := s.flushLog(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit on %s: %w", s.id, err)
	}
	if keep != nil {
		return keep.err
	}
	return nil
}

// keepError asks writeTx to commit what was written and still fail.
type keepError struct{ err error }

func (k *keepError) Error() string { return k.err.Error() }

// exec, query and queryRow rebind placeholders for the dialect.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, s.d.rebind(q), args...)
}

func (s *Store) queryRowTx(ctx context.Context, tx *sql.Tx, q string, args ...any) *sql.Row {
	return tx.QueryRowContext(ctx, s.d.rebind(q), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.r.QueryRowContext(ctx, s.d.rebind(q), args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.r.QueryContext(ctx, s.d.rebind(q), args...)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.queryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping store %s: %w", s.id, err)
	}
	return nil
}
