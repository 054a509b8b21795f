package meter

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
)

// BenchmarkObserve is one 1 s poll of a node of 8 H100s in MIG mode
// (56 units) running 200 processes of 10 tenants, with 60 s windows: most
// polls only accumulate, one in 60 emits a window's records.
func BenchmarkObserve(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var o []attribution.Observation
	for g := range 8 {
		parent := fmt.Sprintf("GPU-%d", g)
		for i := range 7 {
			o = append(o, attribution.Observation{Unit: mig(fmt.Sprintf("MIG-%d-%d", g, i), parent)})
		}
	}
	for pid := range 200 {
		ob := &o[rng.IntN(len(o))]
		tenant := fmt.Sprintf("tenant-%d", rng.IntN(10))
		found := false
		for i := range ob.Shares {
			if ob.Shares[i].Tenant == tenant {
				ob.Shares[i].Weight++
				ob.Shares[i].PIDs = append(ob.Shares[i].PIDs, uint32(pid))
				found = true
			}
		}
		if !found {
			ob.Shares = append(ob.Shares, attribution.Share{Tenant: tenant, Method: "cgroup:kubernetes", Weight: 1, PIDs: []uint32{uint32(pid)}})
		}
		if len(ob.Shares) > 1 {
			ob.SplitRule = "equal"
		}
	}
	m, err := New(Options{Node: "n", Window: time.Minute, MaxHold: 3 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	tick := 0
	records := 0
	for b.Loop() {
		records += len(m.Observe(at(int64(tick)*1000), o))
		tick++
	}
	b.ReportMetric(float64(records)/float64(b.N), "records/op")
}
