package store

import (
	"context"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// BenchmarkIngestBilled measures usage records stored, priced and
// subsidized per second: Ingest of 500-record batches (4 GPUs × 125
// one-minute windows of one tenant) on each store, with billing
// subsidizing every record (two vouchers of one program), pricing them
// with no voucher to pay, and with nothing to price (no card, no mapping:
// the charge rows only).
func BenchmarkIngestBilled(b *testing.B) {
	const (
		gpus    = 4
		windows = 125
	)
	setups := []struct {
		name  string
		setup func(b *testing.B, s *Store)
	}{
		{"subsidized", func(b *testing.B, s *Store) {
			ctx := context.Background()
			billSetup(b, s)
			must(b, s.AddProgram(ctx, testProgram("P1", func(p *billing.Program) { p.CapPerYear = billing.MaxFen })))
			must(b, s.IssueVoucherAt(ctx, testVoucher("v1", "P1", "E1", billing.MaxFen, y2028), y2026))
			must(b, s.IssueVoucherAt(ctx, testVoucher("v2", "P1", "E1", billing.MaxFen, y2028), y2026))
		}},
		{"priced_no_voucher", func(b *testing.B, s *Store) { billSetup(b, s) }},
		{"unpriced", func(b *testing.B, s *Store) {}},
	}
	for _, d := range drivers {
		b.Run(d, func(b *testing.B) {
			for _, st := range setups {
				b.Run(st.name, func(b *testing.B) {
					s := openSource(b, d, newSource(b, d))
					st.setup(b, s)
					n := newBillNode(b, s, "n1")
					ctx := context.Background()
					start := bt
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						b.StopTimer()
						recs := make([]protocol.Record, 0, gpus*windows)
						for w := range windows {
							for g := 1; g <= gpus; g++ {
								recs = append(recs, n.use(g, start.Add(time.Duration(w)*time.Minute), time.Minute, "acme", 60_000))
							}
						}
						start = start.Add(windows * time.Minute)
						sub := n.batch(recs...)
						b.StartTimer()
						if _, err := s.Ingest(ctx, sub); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N*gpus*windows)/b.Elapsed().Seconds(), "records/s")
				})
			}
		})
	}
}
