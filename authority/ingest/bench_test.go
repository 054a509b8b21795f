package ingest_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// BenchmarkIngestSQLite measures records verified and stored per second:
// batches of 200 records (4 GPUs x 50 one-minute windows) through
// ledger.Open, the record checks and the store's transaction on a real
// SQLite file (synchronous=FULL, so each batch is one fsynced commit).
func BenchmarkIngestSQLite(b *testing.B) {
	benchIngest(b, store.DriverSQLite, filepath.Join(b.TempDir(), "bench.db"))
}

// BenchmarkIngestPostgres is BenchmarkIngestSQLite on a fresh database of
// the PostgreSQL server GPUMETER_TEST_POSTGRES names (skipped without one):
// the same batches, one transaction each, the node's row locked FOR
// UPDATE, each record one INSERT round trip on loopback.
func BenchmarkIngestPostgres(b *testing.B) {
	benchIngest(b, store.DriverPostgres, testenv.PostgresDSN(b))
}

func benchIngest(b *testing.B, driver, source string) {
	const (
		gpus    = 4
		minutes = 50
		perB    = gpus * minutes
	)
	ctx := context.Background()
	st, err := store.Open(ctx, driver, source)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	uuids := make([]string, gpus)
	for i := range uuids {
		uuids[i] = fmt.Sprintf("GPU-be7c0000-0000-4000-8000-%012d", i)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := st.RegisterNode(ctx, store.Registration{ID: "n1", Provider: "p", Key: key.Public().(ed25519.PublicKey), GPUs: store.GPUsOf("H100-SXM5-80GB", uuids...)}, base); err != nil {
		b.Fatal(err)
	}
	// The node's inventory, seeded so that every timed batch is the same
	// 200 usage records as before the authority checked against it.
	layouts := map[string]store.Layout{}
	for _, g := range uuids {
		layouts[g] = store.Layout{Instances: map[string]string{}}
	}
	if err := st.SeedInventory(ctx, "n1", base, time.Minute, time.Hour, layouts); err != nil {
		b.Fatal(err)
	}
	clk := clock.NewVirtual(base.Add(time.Duration(b.N*minutes+1) * time.Minute))
	sealer, err := ledger.NewSealer("n1", key, clk.Now)
	if err != nil {
		b.Fatal(err)
	}
	envs := make([][]byte, b.N)
	prev := ""
	for i := range envs {
		recs := make([]protocol.Record, 0, perB)
		for m := range minutes {
			start := base.Add(time.Duration(i*minutes+m) * time.Minute)
			for _, g := range uuids {
				r := protocol.Record{Node: "n1", Provider: "p", WindowStart: start, WindowEnd: start.Add(time.Minute),
					Kind: protocol.KindUsage, Tenant: "tenant-" + g[len(g)-1:], GPUUUID: g, ParentUUID: g, Model: "NVIDIA H100 80GB HBM3",
					SliceNum: 1, SliceDen: 1, GPUMillis: 60000, UtilizationPercent: 80, EnergyMillijoules: 400 * 60000, Attribution: "cgroup"}
				r.ID = r.ComputeID()
				recs = append(recs, r)
			}
		}
		s, err := sealer.Seal(ctx, uint64(i*perB+1), prev, recs)
		if err != nil {
			b.Fatal(err)
		}
		envs[i], prev = s.Envelope, s.Hash
	}
	in, err := ingest.New(ingest.Options{Store: st, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		out, err := in.Ingest(ctx, envs[i])
		if err != nil || out.Records != perB {
			b.Fatalf("batch %d: %+v %v", i, out, err)
		}
	}
	b.StopTimer()
	// Counted from what the database holds, so storing less cannot look
	// fast.
	c, err := st.Count(ctx)
	if err != nil || c.Records != int64(b.N*perB) {
		b.Fatalf("database holds %d records, %v; want %d", c.Records, err, b.N*perB)
	}
	b.ReportMetric(float64(c.Records)/b.Elapsed().Seconds(), "records/s")
}
