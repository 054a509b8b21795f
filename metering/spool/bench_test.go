package spool_test

import (
	"context"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// BenchmarkAppendSeal measures the durable path of one closed window of 200
// records: Append (fsynced), SealNext (signed, fsynced), Ack (fsynced).
func BenchmarkAppendSeal(b *testing.B) {
	ctx := context.Background()
	s := openSpool(b, tempPath(b), spool.Options{})
	seal := newSealFunc(b)
	recs := windowRecs(0, 100) // 200 records
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.Append(ctx, recs, []byte("cp")); err != nil {
			b.Fatal(err)
		}
		sealed, ok, err := s.SealNext(ctx, seal, 0)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if err := s.Ack(ctx, sealed.LastSeq); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkMerge measures merging a day of one-minute windows of 8 GPUs
// into hours (what Append does under the cap).
func BenchmarkMerge(b *testing.B) {
	var in []protocol.Record
	for i := range 1440 {
		in = append(in, windowRecs(i, 8)...)
	}
	b.ReportAllocs()
	for b.Loop() {
		spool.MergeRecords(in, time.Hour)
	}
	b.ReportMetric(float64(b.N*len(in))/b.Elapsed().Seconds(), "records/s")
}
