package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// The queue (pipeline.go) sends an ingest's writes together before the
// commit: in order, every check run, and the first failure rolls back the
// whole transaction, what ran at once and what was queued alike.
func TestQueuedStatements(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		s := open(t)
		ctx := context.Background()
		ins := `INSERT INTO log_checkpoints (size, note, created) VALUES (?, ?, 0)`
		sizes := func() []int64 {
			t.Helper()
			rows, err := s.r.QueryContext(ctx, `SELECT size FROM log_checkpoints ORDER BY size`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []int64
			for rows.Next() {
				var n int64
				if err := rows.Scan(&n); err != nil {
					t.Fatal(err)
				}
				out = append(out, n)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}

		// Sent in order, the check reads what RETURNING gives.
		var seen []int64
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			s.queue(tx, "first", ins, 1, "a")
			s.queueCheck(tx, "second", func(rows resultRows) error {
				for rows.Next() {
					var n int64
					if err := rows.Scan(&n); err != nil {
						return err
					}
					seen = append(seen, n)
				}
				return nil
			}, ins+` RETURNING size`, 2, "b")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := sizes(); len(got) != 2 || got[0] != 1 || got[1] != 2 || len(seen) != 1 || seen[0] != 2 {
			t.Fatalf("stored %v, check saw %v; want [1 2] and [2]", got, seen)
		}

		// A failing statement names itself, keeps the database's error,
		// and nothing of the transaction stays: neither the write made at
		// once nor the queued one before it.
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			if _, err := s.exec(ctx, tx, ins, 10, "now"); err != nil {
				return err
			}
			s.queue(tx, "fine", ins, 11, "c")
			s.queue(tx, "repeat size 1", ins, 1, "d")
			s.queue(tx, "after", ins, 12, "e")
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "repeat size 1") || !s.d.isUnique(err) {
			t.Fatalf("error %v: want the queued statement's unique violation, named", err)
		}
		if got := sizes(); len(got) != 2 {
			t.Fatalf("after a failed batch the table holds %v, want [1 2]", got)
		}

		// A check's verdict refuses the transaction as is.
		verdict := errors.New("total over its window")
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			s.queueCheck(tx, "checked", func(rows resultRows) error {
				for rows.Next() {
				}
				return verdict
			}, ins+` RETURNING size`, 20, "f")
			s.queue(tx, "later", ins, 21, "g")
			return nil
		})
		if !errors.Is(err, verdict) {
			t.Fatalf("error %v, want the check's", err)
		}
		if got := sizes(); len(got) != 2 {
			t.Fatalf("after a refused check the table holds %v, want [1 2]", got)
		}
	})
}

// tripCounter counts the statements, batches and COPYs a PostgreSQL
// connection sends: each is one round trip (a COPY two: pgx reads the
// columns' types first).
type tripCounter struct{ n, copies atomic.Int64 }

func (c *tripCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.n.Add(2)
	c.copies.Add(1)
	return ctx
}
func (c *tripCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// On PostgreSQL an ingest's round trips do not grow with its units,
// tenants or rows: BEGIN, the head, the key row, the GPUs, the layouts,
// the units' windows, the GPUs' windows, the tenants, the rate cards, the
// queued writes and the log's state in one batch, COMMIT.
func TestIngestRoundTrips(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(newSource(t, DriverPostgres))
	if err != nil {
		t.Fatal(err)
	}
	trips := &tripCounter{}
	cfg.Tracer = trips
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	s := &Store{w: db, r: db, d: postgresDialect, id: "traced"}
	if err := s.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	gpus := []string{"GPU-00000000-0000-4000-8000-000000000001", "GPU-00000000-0000-4000-8000-000000000002",
		"GPU-00000000-0000-4000-8000-000000000003", "GPU-00000000-0000-4000-8000-000000000004"}
	k := pubKey(t)
	if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", gpus...)}, t0); err != nil {
		t.Fatal(err)
	}
	batchAt := func(first uint64, prev string, from, windows int) Submission {
		var recs []protocol.Record
		for w := from; w < from+windows; w++ {
			for i, g := range gpus {
				recs = append(recs, win(g, 60*w, 60*w+60, fmt.Sprintf("tenant-%d", i), 1000))
			}
		}
		return batchOf("n1", first, prev, signing.KeyID(k), recs...)
	}
	b1 := batchAt(1, "", 0, 3)
	if _, err := s.Ingest(ctx, b1); err != nil {
		t.Fatal(err)
	}
	b2 := batchAt(13, b1.Hash, 3, 3)
	before := trips.n.Load()
	res, err := s.Ingest(ctx, b2)
	if err != nil || res.Records != 12 {
		t.Fatalf("second batch: %+v %v", res, err)
	}
	if n := trips.n.Load() - before; n > 11 || trips.copies.Load() != 0 {
		t.Errorf("a batch of 12 records of 4 units and 4 tenants took %d round trips (%d COPYs), want at most 11 and none", n, trips.copies.Load())
	}
	// A backlog's batch: its records and charges go as COPYs, two round
	// trips each, and the count does not grow with its rows.
	big := batchAt(25, b2.Hash, 6, 30)
	before = trips.n.Load()
	if res, err := s.Ingest(ctx, big); err != nil || res.Records != 120 {
		t.Fatalf("batch of 120: %+v %v", res, err)
	}
	if n, c := trips.n.Load()-before, trips.copies.Load(); n > 11+2*2+1 || c != 2 {
		t.Errorf("a batch of 120 records took %d round trips and %d COPYs, want at most 16 and 2 (records, charges)", n, c)
	}
}

// A batch large enough to be copied (COPY on PostgreSQL, plain INSERTs on
// SQLite) is stored whole, and one that repeats a stored record anywhere
// in it is refused as an invalid record naming that record, with nothing
// of it stored.
func TestIngestLargeBatch(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := context.Background()
		s := open(t)
		k := pubKey(t)
		gpus := []string{"GPU-00000000-0000-4000-8000-000000000001", "GPU-00000000-0000-4000-8000-000000000002"}
		if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", gpus...)}, t0); err != nil {
			t.Fatal(err)
		}
		recs := func(from, to int) []protocol.Record {
			var out []protocol.Record
			for w := from; w < to; w++ {
				for _, g := range gpus {
					r := win(g, 60*w, 60*w+60, "a", 30000)
					r.ParentUUID = g
					out = append(out, r)
				}
			}
			return out
		}
		first := batchOf("n1", 1, "", signing.KeyID(k), recs(0, copyMinRows)...)
		if res, err := s.Ingest(ctx, first); err != nil || res.Records != 2*copyMinRows {
			t.Fatalf("first batch: %+v %v", res, err)
		}
		// The second batch's 51st record has the id of the first batch's
		// 8th (same unit, window and tenant; its 0 ms keeps the window
		// within wall time).
		next := recs(copyMinRows, 2*copyMinRows)
		again := win(gpus[1], 60*3, 60*3+60, "a", 0)
		again.ParentUUID = gpus[1]
		next[50] = again
		dup := batchOf("n1", 2*copyMinRows+1, first.Hash, signing.KeyID(k), next...)
		before, err := s.Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Ingest(ctx, dup)
		want := fmt.Sprintf("record seq %d: id %s is already stored", 2*copyMinRows+51, first.Batch.Records[7].ID)
		if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want ErrInvalidRecord with %q", err, want)
		}
		after, err := s.Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Errorf("after the refused batch the store holds %+v, before %+v", after, before)
		}
		if n, err := s.Node(ctx, "n1"); err != nil || n.HeadSeq != 2*copyMinRows {
			t.Errorf("head %+v %v, want %d", n, err, 2*copyMinRows)
		}
	})
}
