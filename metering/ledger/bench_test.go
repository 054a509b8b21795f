package ledger_test

import (
	"context"
	"testing"

	"github.com/gpumeter/gpumeter/metering/ledger"
)

// BenchmarkSeal measures signing throughput for 200-record batches.
func BenchmarkSeal(b *testing.B) {
	f := newFixture(b, "node-01")
	recs := records("node-01", 200)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := f.sealer.Seal(ctx, uint64(i)*200+1, "", recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkOpen measures the verifier side for the same batches.
func BenchmarkOpen(b *testing.B) {
	f := newFixture(b, "node-01")
	s, err := f.sealer.Seal(context.Background(), 1, "", records("node-01", 200))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ledger.Open(ctx, s.Envelope, f.lookup); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*200)/b.Elapsed().Seconds(), "records/s")
}
