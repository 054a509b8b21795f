// Command drain times one agent draining a day's backlog into a real
// authority: the backlog (24 hours of 1-minute windows of a node with 8
// GPUs shared by 10 tenants) is appended to a real spool, then the agent's
// reporter, with its default batch size and pipelining, seals and sends it
// to a `voucher-authority serve` process until the authority has it all.
//
// Each repetition starts from a fresh spool, database and authority. It
// prints one Go benchmark line per repetition and fails if the authority's
// head or row count is not the backlog's.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/bench/internal/authproc"
	"github.com/gpumeter/gpumeter/bench/internal/workload"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

type config struct {
	authority string
	driver    string
	pg        string
	windows   int
	gpus      int
	tenants   int
	reps      int
}

func main() {
	var c config
	authproc.Flags(&c.authority, &c.driver, &c.pg, "sqlite", "PostgreSQL DSN whose role may CREATE DATABASE (with --driver postgres)")
	flag.IntVar(&c.windows, "windows", 1440, "1-minute windows in the backlog")
	flag.IntVar(&c.gpus, "gpus", 8, "GPUs of the node")
	flag.IntVar(&c.tenants, "tenants", 10, "tenants sharing them")
	flag.IntVar(&c.reps, "reps", 5, "repetitions (one line each)")
	flag.Parse()
	authproc.Main("drain", func(ctx context.Context) error { return runAll(ctx, c, os.Stdout) })
}

func runAll(ctx context.Context, c config, out io.Writer) error {
	if c.windows < 1 || c.gpus < 1 || c.tenants < 2 || c.reps < 1 {
		return fmt.Errorf("need windows, gpus, reps >= 1 and tenants >= 2")
	}
	name := fmt.Sprintf("BenchmarkDrain/%s/windows=%d", c.driver, c.windows)
	for range c.reps {
		d, recs, err := once(ctx, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\t1\t%.3f s\t%.0f records/s\t%d records\n", name, d.Seconds(), float64(recs)/d.Seconds(), recs)
	}
	return nil
}

// once fills a fresh spool, starts a fresh authority and times the drain.
func once(ctx context.Context, c config) (d time.Duration, n int, err error) {
	dir, err := os.MkdirTemp("", "gpumeter-drain-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	db, err := authproc.Open(ctx, c.driver, c.pg, dir)
	if err != nil {
		return 0, 0, err
	}
	defer db.DropAfter(&err)

	node, err := workload.NewNode(0, c.gpus)
	if err != nil {
		return 0, 0, err
	}
	if err := register(ctx, db, node); err != nil {
		return 0, 0, err
	}
	sp, err := spool.Open(spool.Options{Path: filepath.Join(dir, "spool.db")})
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = sp.Close() }()
	// The backlog: the day that ended at the last whole minute, appended
	// as the meter would have while the authority was out of reach.
	end := time.Now().UTC().Truncate(time.Minute)
	tenants := workload.Tenants(c.tenants)
	recs := []protocol.Record{node.Inventory(end.Add(-time.Duration(c.windows)*time.Minute), time.Minute)}
	for i := range c.windows {
		start := end.Add(time.Duration(i-c.windows) * time.Minute)
		recs = append(recs, node.Window(start, time.Minute, i, tenants)...)
	}
	if err := sp.Append(ctx, recs, nil); err != nil {
		return 0, 0, err
	}

	proc, err := authproc.Start(ctx, c.authority, dir, db)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if serr := proc.Stop(); err == nil {
			err = serr
		}
	}()
	sealer, err := ledger.NewSealer(node.ID, node.Key, time.Now)
	if err != nil {
		return 0, 0, err
	}
	rep, err := reporter.New(reporter.Options{URL: proc.URL, Sealer: sealer, Spool: sp, Key: node.Key})
	if err != nil {
		return 0, 0, err
	}
	t := time.Now()
	if err := rep.Flush(ctx); err != nil {
		return 0, 0, fmt.Errorf("drain: %w (authority log: %s)", err, proc.LogTail())
	}
	d = time.Since(t)
	if st := rep.Stats(); st.AuthorityHead != uint64(len(recs)) || st.AckedHead != uint64(len(recs)) {
		return 0, 0, fmt.Errorf("drained %d records, but the authority's head is %d and the spool's acknowledged mark %d",
			len(recs), st.AuthorityHead, st.AckedHead)
	}
	if err := countStored(ctx, db, node.ID, len(recs)); err != nil {
		return 0, 0, err
	}
	return d, len(recs), nil
}

func register(ctx context.Context, db authproc.Database, n workload.Node) error {
	st, err := store.Open(ctx, db.Driver, db.Source)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	return st.RegisterNode(ctx, store.Registration{ID: n.ID, Provider: workload.Provider, Key: n.Public(), GPUs: store.GPUsOf("H100-SXM5-80GB", n.GPUs...), Since: workload.Since}, time.Now())
}

// countStored checks, in the database itself, that seqs 1..want are
// stored once each.
func countStored(ctx context.Context, db authproc.Database, node string, want int) error {
	conn, err := sql.Open(db.SQLDriver(), db.Source)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	var rows, distinct, maxSeq int
	q := db.Rebind(`SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MAX(seq), 0) FROM records WHERE node_id = ?`)
	if err := conn.QueryRowContext(ctx, q, node).Scan(&rows, &distinct, &maxSeq); err != nil {
		return fmt.Errorf("count stored records: %w", err)
	}
	if rows != want || distinct != want || maxSeq != want {
		return fmt.Errorf("authority stored %d rows, %d distinct seqs up to %d; want %d", rows, distinct, maxSeq, want)
	}
	return nil
}
