package spool

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// RandomWindows is the test generator shared by the internal and external
// tests: nWin consecutive windows of width w from an unaligned start, for
// units GPU-0..GPU-(units-1). A unit is in a window with probability 4/5;
// its window is split into 1..4 parts among usage of tenants t0..t3, idle,
// and three gap reasons, so every (unit, window) sums exactly to the window.
func RandomWindows(rng *rand.Rand, node string, start time.Time, nWin, units int, w time.Duration) [][]protocol.Record {
	keys := []struct {
		kind   protocol.Kind
		tenant string
		gap    string
	}{
		{protocol.KindUsage, "t0", ""}, {protocol.KindUsage, "t1", ""}, {protocol.KindUsage, "t2", ""},
		{protocol.KindUsage, "t3", ""}, {protocol.KindIdle, "", ""}, {protocol.KindGap, "", protocol.GapNoSample},
		{protocol.KindGap, "", protocol.GapDeviceLost}, {protocol.KindGap, "", protocol.GapDeviceAbsent},
	}
	var out [][]protocol.Record
	ws := start
	for range nWin {
		we := ws.Truncate(w).Add(w)
		var win []protocol.Record
		length := we.Sub(ws).Milliseconds()
		for u := range units {
			if rng.IntN(5) == 0 {
				continue
			}
			parts := min(1+rng.IntN(4), int(length))
			cuts := map[int64]bool{}
			for len(cuts) < parts-1 {
				cuts[1+rng.Int64N(length-1)] = true
			}
			bounds := []int64{0, length}
			for c := range cuts {
				bounds = append(bounds, c)
			}
			sortInt64(bounds)
			perm := rng.Perm(len(keys))
			for p := range parts {
				k := keys[perm[p]]
				r := protocol.Record{
					Node: node, Provider: "prov", WindowStart: ws, WindowEnd: we,
					Kind: k.kind, Tenant: k.tenant, GapReason: k.gap,
					GPUUUID: fmt.Sprintf("GPU-00000000-0000-4000-8000-%012d", u), ParentUUID: fmt.Sprintf("GPU-00000000-0000-4000-8000-%012d", u), Model: "H100",
					SliceNum: 1, SliceDen: 1, GPUMillis: bounds[p+1] - bounds[p],
					UtilizationPercent: rng.IntN(102) - 1, EnergyMillijoules: rng.Int64N(1_000_001) - 1,
				}
				if k.kind == protocol.KindUsage {
					r.Attribution = []string{"cgroup", "user"}[rng.IntN(2)]
					if rng.IntN(4) == 0 {
						r.SharedWith, r.SplitRule = 1+rng.IntN(2), "equal"
					}
				}
				if k.kind == protocol.KindGap {
					r.UtilizationPercent, r.EnergyMillijoules = -1, -1
				}
				r.ID = r.ComputeID()
				win = append(win, r)
			}
		}
		if len(win) > 0 {
			out = append(out, win)
		}
		ws = we
	}
	return out
}

func sortInt64(s []int64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// MergeRecords exposes mergeRecords to the external tests.
var MergeRecords = mergeRecords
