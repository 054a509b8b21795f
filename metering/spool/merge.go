package spool

import (
	"cmp"
	"slices"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// mergeBucket is the index of the aligned merge bucket t falls in.
func mergeBucket(t time.Time, width time.Duration) int64 {
	ms, w := t.UnixMilli(), width.Milliseconds()
	b := ms / w
	if ms%w < 0 {
		b--
	}
	return b
}

type mergeKey struct {
	kind   protocol.Kind
	tenant string
	gap    string
}

type mergeGroup struct {
	bucket int64
	unit   string
	recs   []protocol.Record
}

// mergeRecords merges recs into one record per (unit, merge bucket of
// window start, kind, tenant, gap reason), covering [min start, max end) of
// the (unit, bucket) group. Usage per tenant, idle and every gap reason keep
// their milliseconds exactly; where the group's milliseconds fall short of
// its span (the unit had no records for some windows) the difference is a
// device_absent gap, so usage + idle + gap = window holds for the merged
// window. Output order: bucket, unit, kind (usage, idle, gap), tenant or
// reason.
//
// Inventory records are never merged: each is passed through as it is, in
// its place, and the records on either side of it are merged separately
// (the authority reads the inventory in force before the records after
// it, so none of those may move ahead of it, nor any before it behind).
func mergeRecords(recs []protocol.Record, width time.Duration) []protocol.Record {
	var out []protocol.Record
	from := 0
	for i := range recs {
		if recs[i].Kind != protocol.KindInventory {
			continue
		}
		out = append(out, mergeRun(recs[from:i], width)...)
		out = append(out, recs[i])
		from = i + 1
	}
	return append(out, mergeRun(recs[from:], width)...)
}

// mergeRun is mergeRecords on records with no inventory among them.
func mergeRun(recs []protocol.Record, width time.Duration) []protocol.Record {
	type groupKey struct {
		unit   string
		bucket int64
	}
	groups := map[groupKey]*mergeGroup{}
	var order []*mergeGroup
	for _, r := range recs {
		b := mergeBucket(r.WindowStart, width)
		k := groupKey{r.GPUUUID, b}
		g, ok := groups[k]
		if !ok {
			g = &mergeGroup{bucket: b, unit: r.GPUUUID}
			groups[k] = g
			order = append(order, g)
		}
		g.recs = append(g.recs, r)
	}
	slices.SortFunc(order, func(a, b *mergeGroup) int {
		return cmp.Or(cmp.Compare(a.bucket, b.bucket), cmp.Compare(a.unit, b.unit))
	})
	var out []protocol.Record
	for _, g := range order {
		out = append(out, mergeGroupRecords(g.recs)...)
	}
	return out
}

// mergeGroupRecords merges one (unit, bucket) group.
func mergeGroupRecords(recs []protocol.Record) []protocol.Record {
	start, end := recs[0].WindowStart, recs[0].WindowEnd
	var total int64
	parts := map[mergeKey][]protocol.Record{}
	for _, r := range recs {
		if r.WindowStart.Before(start) {
			start = r.WindowStart
		}
		if r.WindowEnd.After(end) {
			end = r.WindowEnd
		}
		total += r.GPUMillis
		k := mergeKey{r.Kind, r.Tenant, r.GapReason}
		parts[k] = append(parts[k], r)
	}
	// Unit attributes (model, parent, slice) are the same for every record
	// of a unit: take them from the first; everything else is set below.
	f := recs[0]
	base := protocol.Record{
		Node: f.Node, Provider: f.Provider, WindowStart: start, WindowEnd: end,
		GPUUUID: f.GPUUUID, ParentUUID: f.ParentUUID, Model: f.Model, MIGProfile: f.MIGProfile,
		SliceNum: f.SliceNum, SliceDen: f.SliceDen,
	}

	var out []protocol.Record
	absent := -1
	for k, rs := range parts {
		r := base
		r.Kind, r.Tenant, r.GapReason = k.kind, k.tenant, k.gap
		combine(&r, rs)
		if k.kind == protocol.KindGap && k.gap == protocol.GapDeviceAbsent {
			absent = len(out)
		}
		out = append(out, r)
	}
	if missing := end.Sub(start).Milliseconds() - total; missing > 0 {
		if absent < 0 {
			r := base
			r.Kind, r.GapReason = protocol.KindGap, protocol.GapDeviceAbsent
			r.UtilizationPercent, r.EnergyMillijoules = -1, -1
			out = append(out, r)
			absent = len(out) - 1
		}
		out[absent].GPUMillis += missing
	}
	for i := range out {
		out[i].ID = out[i].ComputeID()
	}
	slices.SortFunc(out, func(a, b protocol.Record) int {
		return cmp.Or(cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)),
			cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.GapReason, b.GapReason))
	})
	return out
}

func kindRank(k protocol.Kind) int {
	switch k {
	case protocol.KindUsage:
		return 0
	case protocol.KindIdle:
		return 1
	default:
		return 2
	}
}

// combine sums rs (one kind, tenant and reason of one unit) into r, with the
// meter's field semantics (metering/meter doc): utilization is the mean
// weighted by the milliseconds of records that knew it, rounded half up, -1
// if none did; energy is the sum of the known parts, -1 if none was known;
// attribution is that of the longest part (ties to the most recent),
// split rule the last seen while shared, shared_with the most.
func combine(r *protocol.Record, rs []protocol.Record) {
	var ms, utilMs, utilSum, energy int64
	energyKnown, utilKnown := false, false
	var bestMs int64 = -1
	for _, x := range rs {
		ms += x.GPUMillis
		if x.UtilizationPercent >= 0 {
			utilKnown = true
			utilMs += x.GPUMillis
			utilSum += int64(x.UtilizationPercent) * x.GPUMillis
		}
		if x.EnergyMillijoules >= 0 {
			energyKnown = true
			energy += x.EnergyMillijoules
		}
		if x.GPUMillis >= bestMs {
			bestMs, r.Attribution = x.GPUMillis, x.Attribution
		}
		if x.SharedWith > 0 {
			r.SplitRule = x.SplitRule
		}
		r.SharedWith = max(r.SharedWith, x.SharedWith)
	}
	r.GPUMillis = ms
	r.UtilizationPercent = -1
	switch {
	case utilMs > 0:
		r.UtilizationPercent = int((2*utilSum + utilMs) / (2 * utilMs))
	case utilKnown:
		r.UtilizationPercent = 0
	}
	r.EnergyMillijoules = -1
	if energyKnown {
		r.EnergyMillijoules = energy
	}
}
