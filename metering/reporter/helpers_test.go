package reporter_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// t0 is the authority's virtual now; every test window ends before it.
var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

const (
	node     = "node-01"
	provider = "example-cloud"
	units    = 4 // GPUs of node-01; a window has 5 records per GPU
)

func gpu(u int) string { return fmt.Sprintf("GPU-aaaaaaaa-0000-0000-0000-%012d", u) }

// authority is the reference authority (authoritytest) with node-01
// registered under key; wrap, when set, sees every request first (fault
// injection).
type authority struct {
	*authoritytest.Authority
	t   testing.TB
	key ed25519.PrivateKey

	mu   sync.Mutex
	wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)

	posts, gets atomic.Int64
}

// newAuthority is a fresh authority with node-01 registered under a fresh key.
func newAuthority(tb testing.TB) *authority {
	tb.Helper()
	return newAuthorityTLS(tb, newKey(tb), nil)
}

// newAuthorityWithKey is a fresh authority with node-01 registered with key.
func newAuthorityWithKey(tb testing.TB, key ed25519.PrivateKey) *authority {
	tb.Helper()
	return newAuthorityTLS(tb, key, nil)
}

// newAuthorityTLS is a fresh authority with node-01 registered with key,
// serving HTTPS with tlsCfg (plain HTTP when nil).
func newAuthorityTLS(tb testing.TB, key ed25519.PrivateKey, tlsCfg *tls.Config) *authority {
	tb.Helper()
	gpus := make([]string, units)
	for u := range gpus {
		gpus[u] = gpu(u)
	}
	a := &authority{t: tb, key: key}
	a.Authority = authoritytest.New(tb, authoritytest.Options{
		Nodes: []authoritytest.Node{{ID: node, Provider: provider, PublicKey: key.Public().(ed25519.PublicKey), GPUs: gpus}},
		Clock: clock.NewVirtual(t0),
		Wrap:  a.counting,
		TLS:   tlsCfg,
	})
	return a
}

// counting counts requests by method, then hands them to the test's wrap
// if one is set.
func (a *authority) counting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			a.posts.Add(1)
		} else {
			a.gets.Add(1)
		}
		a.mu.Lock()
		wrap := a.wrap
		a.mu.Unlock()
		if wrap != nil {
			wrap(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	})
}

var newKey = testutil.NewKey

func (a *authority) setWrap(f func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	a.mu.Lock()
	a.wrap = f
	a.mu.Unlock()
}

func (a *authority) head() uint64 {
	a.t.Helper()
	return a.Head(a.t, node)
}

func (a *authority) counts() store.Counts {
	a.t.Helper()
	return a.Counts(a.t)
}

// problemAnswer writes an RFC 9457 problem as the authority does.
func problemAnswer(w http.ResponseWriter, status int, cause, detail string, expected *uint64) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	exp := ""
	if expected != nil {
		exp = fmt.Sprintf(`,"expected_seq":%d`, *expected)
	}
	fmt.Fprintf(w, `{"type":"https://gpumeter.dev/problems/%s","title":"t","status":%d,"detail":%q%s}`, cause, status, detail, exp)
}

// dropAfterServing lets the authority handle (and store) the request, then
// closes the connection without an answer: a lost answer.
func dropAfterServing(w http.ResponseWriter, r *http.Request, next http.Handler) {
	next.ServeHTTP(httptest.NewRecorder(), r)
	dropConnection(w)
}

func dropConnection(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	_ = conn.Close()
}

// readBody reads and restores a request's body.
func readBody(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// window is closed minute i of the backlog (the backlog starts two days
// before t0): per GPU, tenants t0..t3 used 10 s each and it idled 20 s.
func window(i int) []protocol.Record {
	start := t0.Add(-48 * time.Hour).Add(time.Duration(i) * time.Minute)
	var out []protocol.Record
	for u := range units {
		base := protocol.Record{
			Node: node, Provider: provider, WindowStart: start, WindowEnd: start.Add(time.Minute),
			GPUUUID: gpu(u), ParentUUID: gpu(u), Model: "NVIDIA H100 80GB HBM3",
			SliceNum: 1, SliceDen: 1, UtilizationPercent: -1, EnergyMillijoules: -1,
		}
		for tn := range 4 {
			r := base
			r.Kind, r.Tenant, r.GPUMillis, r.Attribution = protocol.KindUsage, fmt.Sprintf("t%d", tn), 10000, "cgroup"
			r.ID = r.ComputeID()
			out = append(out, r)
		}
		r := base
		r.Kind, r.GPUMillis = protocol.KindIdle, 20000
		r.ID = r.ComputeID()
		out = append(out, r)
	}
	return out
}

const recsPerWindow = units * 5

// node is the agent side: a real spool file and the node's real key.
type agent struct {
	t      testing.TB
	spool  *spool.Spool
	sealer *ledger.Sealer
	key    ed25519.PrivateKey
}

func newAgent(tb testing.TB, key ed25519.PrivateKey) *agent {
	tb.Helper()
	sp, err := spool.Open(spool.Options{Path: filepath.Join(tb.TempDir(), "spool.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sp.Close() })
	se, err := ledger.NewSealer(node, key, func() time.Time { return t0 })
	if err != nil {
		tb.Fatal(err)
	}
	return &agent{t: tb, spool: sp, sealer: se, key: key}
}

// appendWindows appends windows from..to-1 in one transaction.
func (g *agent) appendWindows(from, to int) {
	g.t.Helper()
	var recs []protocol.Record
	for i := from; i < to; i++ {
		recs = append(recs, window(i)...)
	}
	if err := g.spool.Append(context.Background(), recs, nil); err != nil {
		g.t.Fatal(err)
	}
}

// options are fast-retrying defaults for tests, on the node's clock.
func (g *agent) options(url string) reporter.Options {
	return reporter.Options{
		URL: url, Sealer: g.sealer, Spool: g.spool, Key: g.key, Clock: nodeClock{},
		Timeout: 5 * time.Second, RetryWaitMin: time.Millisecond, RetryWaitMax: 20 * time.Millisecond,
		MaxBatchRecords: 10 * recsPerWindow, MaxInFlight: 2,
	}
}

func (g *agent) reporter(opts reporter.Options) *reporter.Reporter {
	g.t.Helper()
	r, err := reporter.New(opts)
	if err != nil {
		g.t.Fatal(err)
	}
	return r
}

// run starts r.Run; the returned func stops it and returns Run's error.
func run(tb testing.TB, r *reporter.Reporter) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	tb.Cleanup(func() { _ = stop() })
	return stop
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// nodeClock is the node's clock in these tests: it reads t0, the
// authority's virtual now (so the reads it signs are on time there), and
// waits in real time.
type nodeClock struct{}

func (nodeClock) Now() time.Time                         { return t0 }
func (nodeClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// waitClock is a clock.Clock whose After calls the test answers: each is
// reported on waits, and fires only when the test sends on its channel.
type waitClock struct {
	waits chan clockWait
	done  chan struct{}
}

type clockWait struct {
	d    time.Duration
	fire chan time.Time
}

func newWaitClock(tb testing.TB) *waitClock {
	c := &waitClock{waits: make(chan clockWait), done: make(chan struct{})}
	tb.Cleanup(func() { close(c.done) })
	return c
}

func (c *waitClock) Now() time.Time { return t0 }

func (c *waitClock) After(d time.Duration) <-chan time.Time {
	w := clockWait{d: d, fire: make(chan time.Time, 1)}
	select {
	case c.waits <- w:
	case <-c.done:
	}
	return w.fire
}

// next returns the reporter's next wait, failing after a deadline.
func (c *waitClock) next(tb testing.TB) clockWait {
	tb.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(20 * time.Second):
		tb.Fatal("the reporter never waited")
		return clockWait{}
	}
}

// sealBatches seals n batches of up to max records in the spool.
func sealBatches(tb testing.TB, g *agent, n, max int) []ledger.Sealed {
	tb.Helper()
	seal := func(first uint64, prev string, recs []protocol.Record) (ledger.Sealed, error) {
		return g.sealer.Seal(context.Background(), first, prev, recs)
	}
	var out []ledger.Sealed
	for range n {
		s, ok, err := g.spool.SealNext(context.Background(), seal, max)
		if err != nil || !ok {
			tb.Fatalf("seal: %v, sealed %t", err, ok)
		}
		out = append(out, s)
	}
	return out
}

// postDirect delivers an envelope behind the reporter's back.
func postDirect(tb testing.TB, a *authority, env []byte) {
	tb.Helper()
	resp, err := a.HTTP.Client().Post(a.URL+"/v1/batches", "application/json", bytes.NewReader(env))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		tb.Fatalf("direct POST: %d %s", resp.StatusCode, body)
	}
}

// batchSeqs reads first_seq and last_seq from an envelope's payload (0, 0
// if unreadable).
func batchSeqs(env []byte) (first, last uint64) {
	var e struct {
		Payload []byte `json:"payload"`
	}
	var b struct {
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	}
	if json.Unmarshal(env, &e) != nil || json.Unmarshal(e.Payload, &b) != nil {
		return 0, 0
	}
	return b.FirstSeq, b.LastSeq
}

// batchFirstSeq reads first_seq from an envelope's payload (0 if unreadable).
func batchFirstSeq(env []byte) uint64 {
	first, _ := batchSeqs(env)
	return first
}

// flushed makes a reporter with opts and flushes it, failing the test if
// Flush fails; the reporter is returned for its Stats.
func (g *agent) flushed(opts reporter.Options) *reporter.Reporter {
	g.t.Helper()
	r := g.reporter(opts)
	if err := r.Flush(context.Background()); err != nil {
		g.t.Fatalf("Flush: %v", err)
	}
	return r
}

// loggedOptions are g.options(url) with the reporter's log going to the
// returned buffer.
func (g *agent) loggedOptions(url string) (reporter.Options, *logBuffer) {
	logs := &logBuffer{}
	opts := g.options(url)
	opts.Log = logs.logger()
	return opts, logs
}

// runProbing runs a reporter with opts on a waitClock the test answers,
// with RetryWaitMax 1s (both set in opts); stop stops it.
func (g *agent) runProbing(opts *reporter.Options) (r *reporter.Reporter, wc *waitClock, stop func() error) {
	wc = newWaitClock(g.t)
	opts.Clock, opts.RetryWaitMax = wc, time.Second
	r = g.reporter(*opts)
	return r, wc, run(g.t, r)
}

// probe returns the reporter's next wait, probe n, and fails the test
// unless it lies in max/2..max, the jittered interval at which a stopped
// reporter (who) asks again.
func (c *waitClock) probe(tb testing.TB, n int, max time.Duration, who string) clockWait {
	tb.Helper()
	w := c.next(tb)
	if w.d < max/2 || w.d > max {
		tb.Errorf("probe %d: %s waits %s, want %s..%s", n, who, w.d, max/2, max)
	}
	return w
}

// recordFirst makes a answer the first request of method with first and
// pass every other request to the authority; each request of method is
// first given to see, and what see returns is kept, in order, for got.
func recordFirst[T any](a *authority, method string, see func(*http.Request) T, first func(http.ResponseWriter)) (got func() []T) {
	var mu sync.Mutex
	var seen []T
	a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != method {
			next.ServeHTTP(w, r)
			return
		}
		v := see(r)
		mu.Lock()
		seen = append(seen, v)
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			first(w)
			return
		}
		next.ServeHTTP(w, r)
	})
	return func() []T {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// authorityAndAgent starts an authority and an agent of its node that has
// appended windows 0..windows-1.
func authorityAndAgent(tb testing.TB, windows int) (*authority, *agent) {
	tb.Helper()
	a := newAuthority(tb)
	g := newAgent(tb, a.key)
	g.appendWindows(0, windows)
	return a, g
}
