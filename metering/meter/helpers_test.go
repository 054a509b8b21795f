package meter

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// base is aligned to a minute, so offsets of multiples of 60000 are window
// boundaries for the default window.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(ms int64) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

var errLost = errors.New("GPU is lost")

// gpu is a whole GPU with the given utilization and energy counter
// (device.Unknown for either when not read).
func gpu(uuid string, util int, energy int64) device.Unit {
	return device.Unit{UUID: uuid, ParentUUID: uuid, Model: "NVIDIA H100 80GB HBM3",
		SliceNum: 1, SliceDen: 1, UtilizationPercent: util, EnergyMillijoules: energy}
}

// mig is a MIG instance: utilization and energy are not reported.
func mig(uuid, parent string) device.Unit {
	return device.Unit{UUID: uuid, ParentUUID: parent, Model: "NVIDIA H100 80GB HBM3",
		Profile: "1g.10gb", SliceNum: 1, SliceDen: 7,
		UtilizationPercent: device.Unknown, EnergyMillijoules: device.Unknown}
}

func lost(u device.Unit) device.Unit { u.Err = errLost; return u }

func idle(u device.Unit) attribution.Observation { return attribution.Observation{Unit: u} }

// used puts tenants on u with weight 1 each (equal split when several).
func used(u device.Unit, tenants ...string) attribution.Observation {
	o := attribution.Observation{Unit: u}
	for _, t := range tenants {
		o.Shares = append(o.Shares, attribution.Share{Tenant: t, Method: "static", Weight: 1})
	}
	if len(tenants) > 1 {
		o.SplitRule = "equal"
	}
	return o
}

// weighted puts tenants on u with utilization weights, tenant:weight pairs.
func weighted(u device.Unit, shares map[string]int64) attribution.Observation {
	o := attribution.Observation{Unit: u, SplitRule: "utilization"}
	for t, w := range shares {
		o.Shares = append(o.Shares, attribution.Share{Tenant: t, Method: "cgroup:kubernetes", Weight: w})
	}
	return o
}

func obs(o ...attribution.Observation) []attribution.Observation { return o }

// summary is a record in one comparable line, times as offsets from base.
func summary(r protocol.Record) string {
	s := fmt.Sprintf("%d+%d %s %s", r.WindowStart.Sub(base).Milliseconds(), r.GPUMillis, r.GPUUUID, r.Kind)
	switch r.Kind {
	case protocol.KindUsage:
		s += fmt.Sprintf(" %s u%d e%d %s/%d/%s", r.Tenant, r.UtilizationPercent, r.EnergyMillijoules,
			r.Attribution, r.SharedWith, r.SplitRule)
	case protocol.KindIdle:
		s += fmt.Sprintf(" u%d e%d", r.UtilizationPercent, r.EnergyMillijoules)
	case protocol.KindGap:
		s += " " + r.GapReason
	}
	return s
}

func kindRank(k protocol.Kind) int {
	return strings.Index("usage idle  gap   ", string(k))
}

// checkRecords asserts what must hold of any output: fields filled, ids
// stable and unique, record order, and the accounting invariant. cuts are
// Unix ms instants where a window may start or end off the grid (a Stop
// before a restart).
func checkRecords(t *testing.T, recs []protocol.Record, node string, window time.Duration, cuts ...int64) {
	t.Helper()
	ids := map[string]bool{}
	sums := map[string]int64{}
	for i, r := range recs {
		if r.Node != node || r.GPUUUID == "" || r.ParentUUID == "" || r.Model == "" || r.SliceDen == 0 {
			t.Errorf("record %d: identity fields not filled: %+v", i, r)
		}
		if r.ID != r.ComputeID() || ids[r.ID] {
			t.Errorf("record %d: id %q not its ComputeID or duplicated", i, r.ID)
		}
		ids[r.ID] = true
		if r.GPUMillis <= 0 || !r.WindowEnd.After(r.WindowStart) || r.WindowStart.Location() != time.UTC {
			t.Errorf("record %d: bad time: %s", i, summary(r))
		}
		if r.UtilizationPercent < -1 || r.UtilizationPercent > 100 || r.EnergyMillijoules < -1 {
			t.Errorf("record %d: bad utilization or energy: %s", i, summary(r))
		}
		switch r.Kind {
		case protocol.KindUsage:
			if r.Tenant == "" || r.GapReason != "" || r.Attribution == "" {
				t.Errorf("record %d: usage fields: %+v", i, r)
			}
		case protocol.KindIdle:
			if r.Tenant != "" || r.GapReason != "" || r.Attribution != "" {
				t.Errorf("record %d: idle fields: %+v", i, r)
			}
		case protocol.KindGap:
			if r.Tenant != "" || r.GapReason == "" || r.UtilizationPercent != -1 || r.EnergyMillijoules != -1 {
				t.Errorf("record %d: gap fields: %+v", i, r)
			}
		default:
			t.Errorf("record %d: kind %q", i, r.Kind)
		}
		// Only the first window may start off a boundary, only the last end
		// off one, but for the cuts.
		w := window.Milliseconds()
		offGrid := func(ms int64) bool { return ms%w != 0 && !slices.Contains(cuts, ms) }
		if r.WindowEnd.Sub(r.WindowStart) > window ||
			(offGrid(r.WindowStart.UnixMilli()) && !r.WindowStart.Equal(recs[0].WindowStart)) ||
			(offGrid(r.WindowEnd.UnixMilli()) && !r.WindowEnd.Equal(recs[len(recs)-1].WindowEnd)) {
			t.Errorf("record %d: window not aligned: %v-%v", i, r.WindowStart, r.WindowEnd)
		}
		if i > 0 && compareRecords(recs[i-1], r) >= 0 {
			t.Errorf("records %d and %d out of order: %s, %s", i-1, i, summary(recs[i-1]), summary(r))
		}
		sums[fmt.Sprintf("%s %d %d", r.GPUUUID, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli())] += r.GPUMillis
	}
	for k, sum := range sums {
		var uuid string
		var s, e int64
		if _, err := fmt.Sscanf(k, "%s %d %d", &uuid, &s, &e); err != nil {
			t.Fatalf("key %q: %v", k, err)
		}
		if sum != e-s {
			t.Errorf("unit %s window %d-%d: records sum to %d ms, window is %d ms", uuid, s, e, sum, e-s)
		}
	}
}

func compareRecords(a, b protocol.Record) int {
	return cmp.Or(
		a.WindowStart.Compare(b.WindowStart),
		strings.Compare(a.GPUUUID, b.GPUUUID),
		cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)),
		strings.Compare(a.Tenant, b.Tenant),
		strings.Compare(a.GapReason, b.GapReason),
	)
}
