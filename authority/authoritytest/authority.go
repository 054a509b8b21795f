// Package authoritytest runs the reference voucher authority inside a
// test: a real store (a SQLite file in t.TempDir(), or a fresh database on
// the test PostgreSQL server), the real ingest pipeline and HTTP handler,
// on a real loopback listener; and a throwaway PKI for the tests that
// speak TLS to it.
//
// It exists so that the authority's own tests, the reporter's and the
// agent's end-to-end tests deliver to one and the same authority setup
// instead of each wiring store, ingest and server by hand.
//
// It is for tests only: it must never be imported by non-test code, and it
// never fakes the authority's behaviour. What a test needs to disturb
// (fault injection, an outage) goes in front of the real handler.
package authoritytest

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/tlog"
)

// Node is a node registered before the authority starts answering.
type Node struct {
	ID, Provider string
	PublicKey    ed25519.PublicKey
	GPUs         []string
	// Model is the GPUs' model in the authority's model table; "" is
	// DefaultModel.
	Model string
	// Since is the registration time the operator attests; zero is
	// DefaultSince, long before any test's windows, so that an honest
	// node's first window is never before its registration.
	Since time.Time
	// NoInventory leaves the node without an inventory until it reports
	// one. Otherwise it starts with one seeded at Since: its GPUs whole
	// (MIG off), metered in 1-minute windows and merged in 1-hour ones,
	// so that tests which send usage records without an inventory record
	// of their own are judged as an honest agent's would be.
	NoInventory bool
}

// DefaultModel is a Node's model when it names none: the simulator's
// default GPU.
const DefaultModel = "H100-SXM5-80GB"

// DefaultSince is a Node's registration time when it names none.
var DefaultSince = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Drivers are the store drivers an authority can run on; tests that must
// hold on every store loop over them (EachDriver).
var Drivers = []string{store.DriverSQLite, store.DriverPostgres}

// EachDriver runs fn as one subtest per driver in Drivers. Pass the
// driver to Options.Driver.
func EachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range Drivers {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// Options shape the authority. The zero value is an authority on SQLite
// with no node, the real clock, plain HTTP.
type Options struct {
	// Driver is the store: "" or store.DriverSQLite for a SQLite file,
	// store.DriverPostgres for a new database on the server named by
	// GPUMETER_TEST_POSTGRES (internal/testenv: the test skips without
	// one, or fails under GPUMETER_TEST_REQUIRE=1).
	Driver string
	// DBDir is where the SQLite file goes; "" is t.TempDir(). The fuzz
	// targets put it on a tmpfs, where fsync costs nothing.
	DBDir string
	// Nodes are registered, in order, at the clock's now.
	Nodes []Node
	// Clock is the ingester's clock, the registration time, and what
	// signed reads are checked against; nil is the real clock. A client
	// signing reads (the reporter) must sign with the same time.
	Clock clock.Clock
	// MaxBodyBytes is the server's body bound; 0 is its default.
	MaxBodyBytes int64
	// OperatorToken, when set, reads every node's head and usage
	// (server.Options.OperatorToken).
	OperatorToken []byte
	// Wrap, when set, is put in front of the authority's handler: it sees
	// every request that reaches the authority (fault injection, counting).
	Wrap func(http.Handler) http.Handler
	// TLS, when set, serves HTTPS with this configuration (certificates,
	// client authentication); nil serves plain HTTP.
	TLS *tls.Config
	// LogSigner, when set, starts the verifiable log with this key before
	// the nodes are registered (server.Options.LogSigner); nil: no log.
	LogSigner *tlog.Signer
	// Admission bounds concurrent ingests (server.Options.Admission); the
	// zero value: the server's defaults.
	Admission server.Admission
}

// Authority is a started authority. Everything it opened is closed by
// t.Cleanup: the listener first, then the store.
type Authority struct {
	Store    *store.Store
	Ingester *ingest.Ingester
	Server   *server.Server
	// HTTP is the listening server: its Client trusts the server's
	// certificate under TLS, its Listener is the loopback address.
	HTTP   *httptest.Server
	DBPath string // the SQLite file, for tests that read it directly ("" on PostgreSQL)
	DSN    string // the PostgreSQL database's URL ("" on SQLite)
	URL    string // base URL, http:// or https://

	down atomic.Bool
}

// New starts an authority on a fresh store of opts.Driver, registers
// opts.Nodes and listens on 127.0.0.1. It fails t on any setup error.
func New(t testing.TB, opts Options) *Authority {
	t.Helper()
	ctx := context.Background()
	a := &Authority{}
	var (
		st  *store.Store
		err error
	)
	switch opts.Driver {
	case "", store.DriverSQLite:
		dir := opts.DBDir
		if dir == "" {
			dir = t.TempDir()
		}
		a.DBPath = filepath.Join(dir, "authority.db")
		st, err = store.Open(ctx, store.DriverSQLite, a.DBPath)
	case store.DriverPostgres:
		a.DSN = testenv.PostgresDSN(t)
		st, err = store.Open(ctx, store.DriverPostgres, a.DSN)
	default:
		t.Fatalf("authoritytest: unknown driver %q", opts.Driver)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	a.Store = st
	if opts.LogSigner != nil {
		if err := st.StartLog(ctx, opts.LogSigner); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	for _, n := range opts.Nodes {
		model, since := n.Model, n.Since
		if model == "" {
			model = DefaultModel
		}
		if since.IsZero() {
			since = DefaultSince
		}
		reg := store.Registration{ID: n.ID, Provider: n.Provider, Key: n.PublicKey, GPUs: store.GPUsOf(model, n.GPUs...), Since: since}
		if err := st.RegisterNode(ctx, reg, now()); err != nil {
			t.Fatal(err)
		}
		if n.NoInventory {
			continue
		}
		layouts := map[string]store.Layout{}
		for _, g := range n.GPUs {
			layouts[g] = store.Layout{Instances: map[string]string{}}
		}
		if err := st.SeedInventory(ctx, n.ID, since, time.Minute, time.Hour, layouts); err != nil {
			t.Fatal(err)
		}
	}
	// A nil clock stays nil: the ingester then reads the real clock itself.
	a.Ingester, err = ingest.New(ingest.Options{Store: st, Clock: opts.Clock})
	if err != nil {
		t.Fatal(err)
	}
	a.Server, err = server.New(server.Options{Ingester: a.Ingester, Store: st, MaxBodyBytes: opts.MaxBodyBytes,
		OperatorToken: opts.OperatorToken, Clock: opts.Clock, LogSigner: opts.LogSigner,
		Admission: opts.Admission})
	if err != nil {
		t.Fatal(err)
	}
	h := a.Server.Handler()
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	a.HTTP = httptest.NewUnstartedServer(a.unlessDown(h))
	if opts.TLS != nil {
		a.HTTP.TLS = opts.TLS
		a.HTTP.StartTLS()
	} else {
		a.HTTP.Start()
	}
	t.Cleanup(a.HTTP.Close)
	a.URL = a.HTTP.URL
	return a
}

// unlessDown closes every connection unanswered while the authority is
// down, the way an unreachable host looks to a client; otherwise it hands
// the request on.
func (a *Authority) unlessDown(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// SetDown makes the authority unreachable (true) or reachable again
// (false); what it stored stays.
func (a *Authority) SetDown(down bool) { a.down.Store(down) }

// Head is node's head sequence number as the store has it.
func (a *Authority) Head(t testing.TB, node string) uint64 {
	t.Helper()
	n, err := a.Store.Node(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	return n.HeadSeq
}

// Counts is what the store holds.
func (a *Authority) Counts(t testing.TB) store.Counts {
	t.Helper()
	c, err := a.Store.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// HoldReview puts a billed charge in the review queue, as ingest does for
// usage that looks like no work (charges.review 'held', a reviews row
// created at created holding its subsidy), writing the rows directly.
func (a *Authority) HoldReview(t testing.TB, recordID, reason string, created time.Time) {
	t.Helper()
	driver, source, ph := "sqlite", "file:"+a.DBPath+"?_pragma=busy_timeout(10000)", func(n int) string { return "?" }
	if a.DSN != "" {
		driver, source, ph = "pgx", a.DSN, func(n int) string { return "$" + strconv.Itoa(n) }
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ctx := context.Background()
	// Only the driver's placeholders are joined into the SQL.
	//nolint:gosec // G202: placeholders, not data
	if _, err := db.ExecContext(ctx, `UPDATE charges SET review = 'held' WHERE record_id = `+ph(1), recordID); err != nil {
		t.Fatal(err)
	}
	//nolint:gosec // G202: placeholders, not data
	if _, err := db.ExecContext(ctx, `INSERT INTO reviews (record_id, node_id, provider, tenant, entity_id, window_start_ms,
			reason, held_fen, status, created)
		SELECT c.record_id, r.node_id, c.provider, c.tenant, c.entity_id, c.window_start_ms, `+ph(1)+`, c.subsidy_fen, 'held', `+ph(2)+`
		FROM charges c JOIN records r ON r.record_id = c.record_id WHERE c.record_id = `+ph(3),
		reason, created.UnixMilli(), recordID); err != nil {
		t.Fatal(err)
	}
}
