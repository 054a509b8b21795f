package main

import (
	"context"
	"database/sql"
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
	db := authproc.Database{Driver: "sqlite", Source: a.DBPath}
	f, err := newFleet(ctx, config{nodes: 3, gpus: 2, tenants: 3, timeout: 10 * time.Second}, db)
	if err != nil {
		t.Fatal(err)
	}
	f.url = a.URL
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
