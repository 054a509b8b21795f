package main

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/bench/internal/authproc"
)

// A short fleet against the real authority (in-process, SQLite) checks
// clean; the check then notices a record deleted behind its back, and
// rows stored beyond what a node had acknowledged.
func TestCheckFindsLostAndDoubled(t *testing.T) {
	ctx := context.Background()
	a := authoritytest.New(t, authoritytest.Options{})
	f, db := testFleet(t, a, 3)
	f.urls = []string{a.URL}
	events, err := f.drive(ctx, time.Now().Add(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	acked, recs, started := 0, 0, 0
	for _, n := range f.nodes {
		acked += n.batches
		if n.batches > 0 {
			started++
		}
	}
	for _, e := range events {
		recs += e.records
	}
	// 6 a batch, and each node's first batch also carries its inventory.
	if acked == 0 || recs != acked*2*3+started {
		t.Fatalf("%d batches acknowledged, %d records in the events; want some, 6 a batch and an inventory a node", acked, recs)
	}
	res, err := f.check(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ok() || res.records != int64(acked*2*3+started) || res.batches != int64(acked) {
		t.Fatalf("clean run: %+v, want ok with %d batches", res, acked)
	}

	conn, err := sql.Open("sqlite", a.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n0 := f.nodes[0]
	if _, err := conn.ExecContext(ctx, `DELETE FROM records WHERE node_id = ? AND seq = 2`, n0.ID); err != nil {
		t.Fatal(err)
	}
	res, err = f.check(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if res.lost != 1 || res.doubled != 0 {
		t.Fatalf("after deleting a record: lost %d doubled %d, want 1 and 0", res.lost, res.doubled)
	}

	// Node 1 "forgets" its last batch: the authority then holds rows the
	// node never had acknowledged, and a head it does not know.
	n1 := f.nodes[1]
	n1.acked -= 2 * 3
	n1.batches--
	res, err = f.check(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if res.doubled != 2*3 || res.headMismatches != 1 || res.ok() {
		t.Fatalf("rows past the acknowledged head: %+v, want 6 doubled and 1 head mismatch", res)
	}
}

func TestBucketCountsEachWindowsAcknowledgements(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	bounds := []time.Time{at(100), at(200), at(300)}
	events := []event{
		{at: at(50), lat: time.Second, records: 24}, // warm-up: left out
		{at: at(100), lat: 3 * time.Millisecond, records: 24},
		{at: at(150)},             // a resend
		{at: at(160), shed: true}, // a resend after a 503 with Retry-After
		{at: at(199), lat: 1 * time.Millisecond, records: 24},
		{at: at(200), lat: 7 * time.Millisecond, records: 24},
		{at: at(300), lat: time.Second, records: 24}, // the tail: left out
	}
	p := bucket(events, bounds)
	if len(p) != 2 || p[0].batches != 2 || p[0].records != 48 || p[0].retries != 1 || p[0].shed != 1 || p[1].batches != 1 || p[1].retries != 0 || p[1].shed != 0 {
		t.Fatalf("phases: %+v", p)
	}
	if p[0].latencies[0] != time.Millisecond || p[0].percentile(50) != time.Millisecond || p[0].percentile(99) != 3*time.Millisecond {
		t.Fatalf("window 0 latencies %v, p50 %v, p99 %v", p[0].latencies, p[0].percentile(50), p[0].percentile(99))
	}
	if r := p[0].recordsPerSec(); r != 480 {
		t.Fatalf("window 0: %v records/s, want 48 in 100 ms", r)
	}
}

// testFleet is a fleet of n nodes (2 GPUs each) registered in a's SQLite
// database.
func testFleet(t *testing.T, a *authoritytest.Authority, n int) (*fleet, authproc.Database) {
	t.Helper()
	db := authproc.Database{Driver: "sqlite", Source: a.DBPath}
	f, err := newFleet(context.Background(), config{nodes: n, gpus: 2, tenants: 3, timeout: 10 * time.Second}, db)
	if err != nil {
		t.Fatal(err)
	}
	return f, db
}

// Steady load: each node sends one window per interval, not as fast as
// the authority answers.
func TestSteadyLoadSendsOneWindowPerInterval(t *testing.T) {
	ctx := context.Background()
	a := authoritytest.New(t, authoritytest.Options{})
	f, db := testFleet(t, a, 4)
	f.urls, f.interval = []string{a.URL}, 100*time.Millisecond
	// Windows are due at 0, 100, 200 and 300 ms plus the node's phase
	// (0, 25, 50, 75 ms): at most 4 each before 350 ms.
	if _, err := f.drive(ctx, time.Now().Add(350*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for _, n := range f.nodes {
		if n.batches < 1 || n.batches > 4 {
			t.Errorf("%s sent %d windows in 350 ms at one per 100 ms, want 1 to 4", n.ID, n.batches)
		}
	}
	if res, err := f.check(ctx, db); err != nil || !res.ok() {
		t.Fatalf("check: %+v, %v", res, err)
	}
}

// With two authority addresses every request goes to the next in turn,
// and the check asks each for every node's head.
func TestRequestsGoToEachAuthorityInTurn(t *testing.T) {
	ctx := context.Background()
	a := authoritytest.New(t, authoritytest.Options{})
	target, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	var posts, heads [2]atomic.Int64
	var urls []string
	for k := range 2 {
		proxy := httputil.NewSingleHostReverseProxy(target)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				posts[k].Add(1)
			} else {
				heads[k].Add(1)
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	f, db := testFleet(t, a, 3)
	f.urls = urls
	if _, err := f.drive(ctx, time.Now().Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	p0, p1 := posts[0].Load(), posts[1].Load()
	if p0+p1 < 2 || p0-p1 > 1 || p1-p0 > 1 {
		t.Fatalf("POSTs per authority %d and %d, want some, in turn", p0, p1)
	}
	res, err := f.check(ctx, db)
	if err != nil || !res.ok() {
		t.Fatalf("check: %+v, %v", res, err)
	}
	if heads[0].Load() != 3 || heads[1].Load() != 3 {
		t.Fatalf("heads asked %d and %d times, want every node's of each", heads[0].Load(), heads[1].Load())
	}
}

func TestBenchNameSaysTheKind(t *testing.T) {
	for c, want := range map[config]string{
		{driver: "postgres", nodes: 1000, replicas: 1}:                        "BenchmarkFleet/postgres/nodes=1000",
		{driver: "postgres", nodes: 1000, replicas: 1, interval: time.Minute}: "BenchmarkFleetSteady/postgres/nodes=1000/interval=1m0s",
		{driver: "postgres", nodes: 1000, replicas: 2}:                        "BenchmarkFleetReplicas/postgres/replicas=2/nodes=1000",
	} {
		if got := benchName(c); got != want {
			t.Errorf("benchName(%+v) = %s, want %s", c, got, want)
		}
	}
}
