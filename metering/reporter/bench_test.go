package reporter_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDrain delivers a day's backlog of one node (1440 one-minute
// windows x 20 records) to the reference authority on SQLite over real
// HTTP, with the default batch size; records/s is the drain rate after an
// outage, authority included.
func BenchmarkDrain(b *testing.B) {
	const windows = 1440
	var total time.Duration
	for range b.N {
		b.StopTimer()
		a := newAuthority(b)
		g := newAgent(b, a.key)
		g.appendWindows(0, windows)
		opts := g.options(a.URL)
		opts.MaxBatchRecords, opts.MaxInFlight = 0, 0 // defaults: 1000 records, 4 in flight
		r := g.reporter(opts)
		b.StartTimer()
		start := time.Now()
		if err := r.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if h := a.head(); h != windows*recsPerWindow {
			b.Fatalf("authority head %d, want %d", h, windows*recsPerWindow)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*windows*recsPerWindow)/total.Seconds(), "records/s")
}
