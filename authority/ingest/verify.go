package ingest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gpumeter/gpumeter/authority/inventory"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// Defaults for Limits.
const (
	DefaultMaxWindow      = time.Hour
	DefaultMaxMergeWindow = 24 * time.Hour
)

// energyTolerance bounds energy by the model's maximum power over a
// record's milliseconds plus one second (an energy counter's delta across
// one poll can fall on either side of a window boundary), times 5/4 (brief
// excursions above the power limit): past that the reading cannot be a
// real GPU's.
const (
	energySlackMillis = 1000
	energyNum         = 5
	energyDen         = 4
)

// verify judges a batch by the facts the authority holds of its node
// (store.Facts, read inside the ingest transaction) and the model table,
// record by record in chain order: an inventory record changes the facts
// that the records after it are judged by. It returns a verdict per record
// (the registered model and the table's slice that billing prices by, the
// weight the record takes of its physical GPU, and a reason to hold its
// subsidy for review), or the first refusal as a *protocol.Problem.
//
// A record whose GPU is not the node's gets an empty verdict: the store
// refuses it next, with gpu-not-registered or gpu-claimed.
func (in *Ingester) verify(f *store.Facts, b *protocol.Batch) ([]store.RecordVerdict, error) {
	vs := make([]store.RecordVerdict, len(b.Records))
	mt := modelCache{}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Kind == protocol.KindInventory {
			if p := in.applyInventory(f, r); p != nil {
				return nil, p
			}
			continue
		}
		g, ok := f.GPUs[r.ParentUUID]
		if !ok {
			continue
		}
		v, p := in.judge(f, g, r, mt)
		if p != nil {
			return nil, p
		}
		vs[i] = v
	}
	return vs, nil
}

// judge checks one usage, idle or gap record of a registered GPU g.
func (in *Ingester) judge(f *store.Facts, g store.GPU, r *protocol.Record, mt modelCache) (store.RecordVerdict, *protocol.Problem) {
	seq := "record seq " + strconv.FormatUint(r.Seq, 10) + ": "
	start, end := r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()
	if f.Window == 0 {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.NoInventory, seq+"the node has reported no inventory (its GPUs, layout and metering window) before its usage")
	}
	m, ok := mt.lookup(r.Model)
	if !ok || m.ID != g.Model {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.ModelMismatch,
			fmt.Sprintf("%smodel %q, but GPU %s is registered as %s", seq, r.Model, g.UUID, g.Model))
	}
	num, den, ok := m.Slice(r.MIGProfile)
	if !ok {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.SliceMismatch,
			fmt.Sprintf("%s%s has no MIG profile %q", seq, m.ID, r.MIGProfile))
	}
	if num != r.SliceNum || den != r.SliceDen {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.SliceMismatch,
			fmt.Sprintf("%sslice %d/%d, but profile %q of %s is %d/%d", seq, r.SliceNum, r.SliceDen, r.MIGProfile, m.ID, num, den))
	}
	if store.SliceScale%den != 0 {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.SliceMismatch,
			fmt.Sprintf("%sslice denominator %d does not divide %d", seq, den, store.SliceScale))
	}
	if r.WindowStart.Before(g.Registered) {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.BeforeActive,
			fmt.Sprintf("%swindow starts %s, before GPU %s was registered (%s)", seq, stamp(r.WindowStart), g.UUID, stamp(g.Registered)))
	}
	if r.WindowStart.Before(f.KeyActiveFrom) {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.BeforeActive,
			fmt.Sprintf("%swindow starts %s, before the signing key's activation (%s)", seq, stamp(r.WindowStart), stamp(f.KeyActiveFrom)))
	}
	if !withinBucket(start, end, f.Window) && (f.MergeWindow == 0 || !withinBucket(start, end, f.MergeWindow)) {
		return store.RecordVerdict{}, protocol.NewProblem(protocol.WindowTooLong,
			fmt.Sprintf("%swindow [%s, %s) is not inside one aligned metering window of %d ms (nor one merge window of %d ms) that the node declared",
				seq, stamp(r.WindowStart), stamp(r.WindowEnd), f.Window, f.MergeWindow))
	}
	if p := inLayout(f, r, start, end, seq); p != nil {
		return store.RecordVerdict{}, p
	}
	if r.EnergyMillijoules >= 0 {
		limit := m.MaxEnergyMillijoules(r.GPUMillis+energySlackMillis) / energyDen * energyNum
		if r.EnergyMillijoules > limit {
			return store.RecordVerdict{}, protocol.NewProblem(protocol.InvalidValue,
				fmt.Sprintf("%senergy %d mJ over %d ms is above %s's maximum power (at most %d mJ)", seq, r.EnergyMillijoules, r.GPUMillis, m.ID, limit))
		}
	}
	v := store.RecordVerdict{Model: m.ID, SliceNum: int64(num), SliceDen: int64(den),
		Weight: store.SliceScale / int64(den) * int64(num)}
	if r.Kind == protocol.KindGap && r.GapReason == protocol.GapDeviceAbsent {
		v.Weight = 0 // the unit did not exist: none of the GPU's time
	}
	if r.Kind == protocol.KindUsage && r.GPUMillis > 0 {
		switch {
		case r.EnergyMillijoules >= 0 && m.AtOrBelowIdle(r.EnergyMillijoules, r.GPUMillis):
			v.Hold = fmt.Sprintf("energy %d mJ over %d ms: mean power at or below %s's idle floor of %d W",
				r.EnergyMillijoules, r.GPUMillis, m.ID, m.IdleFloorMilliwatts/1000)
		case r.UtilizationPercent == 0:
			v.Hold = "0 % utilization throughout"
		}
	}
	return v, nil
}

// modelCache remembers the model table's answer per model name within a
// batch: every record of a GPU names the same model, and a lookup copies
// the model.
type modelCache map[string]*inventory.Model

func (c modelCache) lookup(name string) (*inventory.Model, bool) {
	if m, ok := c[name]; ok {
		return m, m != nil
	}
	m, ok := inventory.Lookup(name)
	if !ok {
		c[name] = nil
		return nil, false
	}
	c[name] = &m
	return &m, true
}

// inLayout: a whole-GPU record needs MIG off, a MIG record its instance
// with its profile, in some layout in force during its window.
func inLayout(f *store.Facts, r *protocol.Record, start, end int64, seq string) *protocol.Problem {
	ls := f.LayoutsDuring(r.ParentUUID, start, end)
	if len(ls) == 0 {
		return protocol.NewProblem(protocol.NoInventory,
			fmt.Sprintf("%sGPU %s has no reported layout before %s", seq, r.ParentUUID, stamp(r.WindowEnd)))
	}
	for _, l := range ls {
		if r.MIGProfile == "" && !l.MIG {
			return nil
		}
		if r.MIGProfile != "" && l.MIG && l.Instances[r.GPUUUID] == r.MIGProfile {
			return nil
		}
	}
	if r.MIGProfile == "" {
		return protocol.NewProblem(protocol.NotInLayout,
			fmt.Sprintf("%swhole-GPU record of %s while the node reported MIG mode on for the whole window", seq, r.ParentUUID))
	}
	return protocol.NewProblem(protocol.NotInLayout,
		fmt.Sprintf("%sunit %s (%s) is not an instance of GPU %s's reported layout during [%s, %s)",
			seq, r.GPUUUID, r.MIGProfile, r.ParentUUID, stamp(r.WindowStart), stamp(r.WindowEnd)))
}

// applyInventory checks an inventory record against the registry and the
// model table and applies it to f.
func (in *Ingester) applyInventory(f *store.Facts, r *protocol.Record) *protocol.Problem {
	inv := r.Inventory
	seq := "inventory seq " + strconv.FormatUint(r.Seq, 10) + ": "
	day := (24 * time.Hour).Milliseconds()
	switch {
	case inv.WindowMillis > in.limits.MaxWindow.Milliseconds() || day%inv.WindowMillis != 0:
		return protocol.NewProblem(protocol.InvalidInventory,
			fmt.Sprintf("%swindow_ms %d must divide 24 h and be at most %s", seq, inv.WindowMillis, in.limits.MaxWindow))
	case inv.MergeWindowMillis != 0 && (inv.MergeWindowMillis > in.limits.MaxMergeWindow.Milliseconds() || day%inv.MergeWindowMillis != 0):
		return protocol.NewProblem(protocol.InvalidInventory,
			fmt.Sprintf("%smerge_window_ms %d must divide 24 h and be at most %s", seq, inv.MergeWindowMillis, in.limits.MaxMergeWindow))
	}
	layouts := map[string]store.Layout{}
	for _, g := range inv.GPUs {
		reg, registered := f.GPUs[g.UUID]
		m, known := inventory.Lookup(g.Model)
		if registered && (!known || m.ID != reg.Model) {
			return protocol.NewProblem(protocol.ModelMismatch,
				fmt.Sprintf("%sGPU %s reported as %q, registered as %s", seq, g.UUID, g.Model, reg.Model))
		}
		l := store.Layout{MIG: g.MIGEnabled, Instances: map[string]string{}}
		var bad *protocol.Problem
		if g.MIGEnabled {
			profiles := make([]string, 0, len(g.Instances))
			for _, i := range g.Instances {
				profiles = append(profiles, i.Profile)
				l.Instances[i.UUID] = i.Profile
			}
			switch {
			case !known:
			case !m.MIG:
				bad = protocol.NewProblem(protocol.InvalidInventory, fmt.Sprintf("%sGPU %s: %s has no MIG mode", seq, g.UUID, m.ID))
			default:
				if err := m.CheckLayout(profiles); err != nil {
					bad = protocol.NewProblem(protocol.InvalidInventory, fmt.Sprintf("%sGPU %s: %v", seq, g.UUID, err))
				}
			}
		}
		if !registered {
			// Not the node's (yet): its usage is refused for now, but a
			// valid layout of a known model is kept apart, to become the
			// GPU's if the operator registers it to this node later
			// (this record is never sent again).
			if known && bad == nil {
				f.AddUnregistered(r.Seq, r.WindowStart.UnixMilli(), g.UUID, m.ID, l)
			}
			continue
		}
		if bad != nil {
			return bad
		}
		layouts[g.UUID] = l
	}
	if err := f.AddInventory(r.Seq, r.ID, r.WindowStart.UnixMilli(), inv.WindowMillis, inv.MergeWindowMillis, layouts); err != nil {
		return protocol.NewProblem(protocol.InvalidInventory, seq+err.Error())
	}
	return nil
}

// withinBucket: [start, end) lies inside one aligned window of width ms.
func withinBucket(start, end, width int64) bool {
	return end-start <= width && floorDiv(start, width) == floorDiv(end-1, width)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
