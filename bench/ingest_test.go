package bench_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/bench/internal/authproc"
	"github.com/gpumeter/gpumeter/bench/internal/workload"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// ingestWindows is windows per batch: 10 windows of a node with 8 GPUs
// (3 records a GPU) make batches of 240 records.
const ingestWindows = 10

// BenchmarkIngest is records verified and stored per second by the
// authority (ingest.Ingester: envelope, signature, chain, plausibility,
// per-unit window totals, billing, one transaction per batch) beside the
// limit: a bare INSERT of the same batch and record rows, one transaction
// per batch, into the same kind of database with the same settings.
// PostgreSQL runs where GPUMETER_TEST_POSTGRES names a server.
func BenchmarkIngest(b *testing.B) {
	for _, driver := range []string{store.DriverSQLite, "postgres"} {
		b.Run(driver+"/verified", func(b *testing.B) { benchIngest(b, driver, false) })
		// The same with what a program's batch costs besides: every usage
		// record priced by a rate card and paid in part by its tenant's
		// voucher (charges, grants, balances, carries), and the batch and
		// each grant appended to the verifiable log.
		b.Run(driver+"/priced", func(b *testing.B) { benchIngest(b, driver, true) })
		b.Run(driver+"/bare-insert", func(b *testing.B) {
			st, w := openBenchDB(b, driver)
			envs, batches := sealedBatches(b, st, b.N)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if err := bareInsert(ctx, w, driver, batches[i], envs[i]); err != nil {
					b.Fatalf("batch %d: %v", i, err)
				}
			}
			b.StopTimer()
			reportRecords(b, st)
		})
	}
}

// benchIngest times ingest.Ingester.Ingest of b.N sealed batches into a
// fresh database of driver; priced first gives the tenants vouchers, a
// rate card and the log (priceAndLog), and then requires that the vouchers
// paid and every batch got a log index.
func benchIngest(b *testing.B, driver string, priced bool) {
	st, w := openBenchDB(b, driver)
	_ = w.Close()
	envs, _ := sealedBatches(b, st, b.N)
	if priced {
		priceAndLog(b, st)
	}
	in, err := ingest.New(ingest.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		out, err := in.Ingest(ctx, envs[i])
		if err != nil || out.Duplicate || out.Records != ingestWindows*8*workload.RecordsPerGPU || (priced && out.LogIndex == nil) {
			b.Fatalf("batch %d: %+v %v", i, out, err)
		}
	}
	b.StopTimer()
	if priced {
		vs, err := st.Vouchers(ctx, "E-00")
		if err != nil || len(vs) != 1 || vs[0].Balance >= vs[0].Face {
			b.Fatalf("tenant-00's voucher %+v %v: want one that paid", vs, err)
		}
	}
	reportRecords(b, st)
}

// reportRecords reports records/s from what the database holds, so a
// benchmark that stored less than it claims cannot look fast.
func reportRecords(b *testing.B, st *store.Store) {
	b.Helper()
	c, err := st.Count(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if want := int64(b.N * ingestWindows * 8 * workload.RecordsPerGPU); c.Records != want {
		b.Fatalf("database holds %d records, want %d", c.Records, want)
	}
	b.ReportMetric(float64(c.Records)/b.Elapsed().Seconds(), "records/s")
}

// openBenchDB opens a fresh authority database through the store (schema
// and migrations), and a plain database/sql pool on the same database
// with the store's settings for the bare INSERT.
func openBenchDB(b *testing.B, driver string) (*store.Store, *sql.DB) {
	b.Helper()
	ctx := context.Background()
	var source, sqlDriver, plain string
	switch driver {
	case store.DriverSQLite:
		source = filepath.Join(b.TempDir(), "authority.db")
		// The store's writer settings (authority/store): WAL, fsync on
		// every commit, foreign keys on, BEGIN IMMEDIATE.
		q := url.Values{}
		for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(FULL)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		sqlDriver, plain = "sqlite", "file:"+source+"?"+q.Encode()
	default:
		source = testenv.PostgresDSN(b)
		sqlDriver, plain = "pgx", source
	}
	st, err := store.Open(ctx, driver, source)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	w, err := sql.Open(sqlDriver, plain)
	if err != nil {
		b.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	b.Cleanup(func() { _ = w.Close() })
	return st, w
}

// priceAndLog makes every bench tenant an entity holding a voucher of a
// program that pays half of a rate card's price for the bench provider's
// H100s, and starts the verifiable log.
func priceAndLog(b *testing.B, st *store.Store) {
	b.Helper()
	ctx := context.Background()
	until := time.Now().AddDate(10, 0, 0).UTC().Truncate(time.Hour)
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	must(st.AddRateCard(ctx, billing.RateCard{ID: "h100", Provider: workload.Provider, Model: "H100-SXM5-80GB", PricePerHour: 1200, ValidFrom: workload.Since}))
	must(st.AddProgram(ctx, billing.Program{ID: "P1", Issuer: "city", Name: "bench program", Ratio: 5000, CapPerYear: billing.MaxFen,
		Providers: []string{workload.Provider}, ValidFrom: workload.Since, ValidTo: until, Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}))
	for i, t := range workload.Tenants(10) {
		e := fmt.Sprintf("E-%02d", i)
		must(st.PutEntity(ctx, billing.Entity{ID: e, Name: t}))
		must(st.MapTenant(ctx, workload.Provider, t, e))
		must(st.IssueVoucherAt(ctx, billing.Voucher{ID: "V-" + e, Program: "P1", Holder: e, Face: 1_000_000_000, Issued: workload.Since, Expires: until}, workload.Since))
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	sg, err := tlog.NewSigner("bench.example/log", key)
	must(err)
	must(st.StartLog(ctx, sg))
}

// sealedBatches registers a bench node in st and seals n chained batches
// of it, windows ending in the past; it returns the envelopes and the
// batches as sealed (records numbered).
func sealedBatches(b *testing.B, st *store.Store, n int) ([][]byte, []protocol.Batch) {
	b.Helper()
	ctx := context.Background()
	node, err := workload.NewNode(0, 8)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	if err := st.RegisterNode(ctx, store.Registration{ID: node.ID, Provider: workload.Provider, Key: node.Public(), GPUs: store.GPUsOf("H100-SXM5-80GB", node.GPUs...), Since: workload.Since}, now); err != nil {
		b.Fatal(err)
	}
	// The node's inventory, seeded so that every timed batch holds only
	// usage, idle and gap records, as the bare INSERT loop's do.
	layouts := map[string]store.Layout{}
	for _, g := range node.GPUs {
		layouts[g] = store.Layout{Instances: map[string]string{}}
	}
	if err := st.SeedInventory(ctx, node.ID, workload.Since, time.Minute, time.Hour, layouts); err != nil {
		b.Fatal(err)
	}
	sealer, err := ledger.NewSealer(node.ID, node.Key, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	tenants := workload.Tenants(10)
	base := now.Truncate(time.Minute).Add(-time.Duration(n*ingestWindows+1) * time.Minute)
	envs := make([][]byte, n)
	batches := make([]protocol.Batch, n)
	prev, seq := "", uint64(1)
	for i := range n {
		var recs []protocol.Record
		for w := range ingestWindows {
			k := i*ingestWindows + w
			recs = append(recs, node.Window(base.Add(time.Duration(k)*time.Minute), time.Minute, k, tenants)...)
		}
		s, err := sealer.Seal(ctx, seq, prev, recs)
		if err != nil {
			b.Fatal(err)
		}
		bt := protocol.Batch{Node: node.ID, KeyID: sealer.KeyID(), FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, PrevHash: prev, Records: recs}
		bt.Records = append([]protocol.Record(nil), recs...)
		for j := range bt.Records {
			bt.Records[j].Seq = s.FirstSeq + uint64(j)
		}
		envs[i], batches[i] = s.Envelope, bt
		prev, seq = s.Hash, s.LastSeq+1
	}
	return envs, batches
}

// bareChunk is records per INSERT statement in bareInsert: one statement
// per 100 rows (2 200 parameters, under SQLite's and PostgreSQL's limits)
// rather than one per row, which on PostgreSQL is a round trip each.
const bareChunk = 100

// bareInsert writes what the store writes for a batch (the batch row with
// its envelope, and every record row), in one transaction, with none of
// the checks: the fastest plain way to put the same rows in the database.
func bareInsert(ctx context.Context, db *sql.DB, driver string, bt protocol.Batch, env []byte) error {
	rebind := authproc.Database{Driver: driver}.Rebind
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, rebind(`INSERT INTO batches (node_id, first_seq, last_seq, hash, key_id, received_at, envelope)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), bt.Node, bt.FirstSeq, bt.LastSeq, protocol.Hash(env), bt.KeyID, time.Now().UnixMilli(), env); err != nil {
		return err
	}
	for at := 0; at < len(bt.Records); at += bareChunk {
		recs := bt.Records[at:min(at+bareChunk, len(bt.Records))]
		q, args := store.RecordsInsert(&bt, recs)
		if _, err := tx.ExecContext(ctx, rebind(q), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
