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
	p, err := f.drive(ctx, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if p.batches < 3 || p.records != p.batches*2*3 || len(p.latencies) != p.batches {
		t.Fatalf("drive: %d batches, %d records, %d latencies", p.batches, p.records, len(p.latencies))
	}
	res, err := f.check(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ok() || res.records != int64(p.records) || res.batches != int64(p.batches) {
		t.Fatalf("clean run: %+v, want ok with %d records in %d batches", res, p.records, p.batches)
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
