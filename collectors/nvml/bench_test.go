package nvml_test

import (
	"context"
	"slices"
	"testing"
)

// BenchmarkCollectDGXH100 is one Collect on a fully partitioned DGX H100:
// 8 GPUs × 7 × 1g.10gb (56 MIG instances) with 200 processes over them.
func BenchmarkCollectDGXH100(b *testing.B) {
	layout := slices.Repeat([]string{"1g.10gb"}, 7)
	mig := map[int][]string{}
	for i := range 8 {
		mig[i] = layout
	}
	m := dgx(b, mig)
	var units []string
	for i := range 8 {
		units = append(units, m.MIGUUIDs(i)...)
	}
	perUnit := map[string][]uint32{}
	for p := range 200 {
		u := units[p%len(units)]
		perUnit[u] = append(perUnit[u], uint32(10000+p))
	}
	for u, pids := range perUnit {
		if err := m.SetProcesses(u, procs(pids...)); err != nil {
			b.Fatal(err)
		}
	}
	c := started(b, m)
	s := collect(b, c)
	n := 0
	for _, u := range s.Units() {
		n += len(u.Processes)
	}
	if len(s.Units()) != 56 || n != 200 {
		b.Fatalf("%d units with %d processes, want 56 with 200", len(s.Units()), n)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Collect(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
