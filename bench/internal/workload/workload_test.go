package workload

import (
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// Every unit's records of a window must sum to the window exactly (the
// meter's invariant, which the authority checks), be valid on their own,
// and have distinct ids; nodes must not share GPUs.
func TestWindowIsWhatAMeterCloses(t *testing.T) {
	a, err := NewNode(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewNode(2, 8)
	if err != nil {
		t.Fatal(err)
	}
	gpus := map[string]bool{}
	for _, g := range append(a.GPUs, b.GPUs...) {
		if gpus[g] {
			t.Fatalf("GPU %s belongs to two nodes", g)
		}
		gpus[g] = true
	}
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ids := map[string]bool{}
	for i := range 3 {
		for _, width := range []time.Duration{time.Minute, 7 * time.Second} {
			recs := a.Window(start.Add(time.Duration(i)*time.Hour), width, i, Tenants(10))
			if len(recs) != 8*RecordsPerGPU {
				t.Fatalf("window has %d records, want %d", len(recs), 8*RecordsPerGPU)
			}
			sum := map[string]int64{}
			for _, r := range recs {
				if err := ledger.CheckRecord(&r); err != nil {
					t.Fatal(err)
				}
				if r.ID != r.ComputeID() || ids[r.ID] {
					t.Fatalf("record id %s is not its own or not unique", r.ID)
				}
				ids[r.ID] = true
				if r.Kind == protocol.KindUsage && r.Tenant == "" {
					t.Fatalf("usage without tenant: %+v", r)
				}
				sum[r.GPUUUID] += r.GPUMillis
			}
			for g, ms := range sum {
				if ms != width.Milliseconds() {
					t.Fatalf("GPU %s: %d ms in a %s window", g, ms, width)
				}
			}
		}
	}
}
