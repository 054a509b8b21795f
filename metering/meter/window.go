package meter

import (
	"slices"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// Gap reasons by index, in the order records list them (lexical).
const (
	gapDown = iota
	gapAbsent
	gapLost
	gapNoSample
	numGaps
)

func gapReason(g int) string {
	switch g {
	case gapDown:
		return protocol.GapAgentDown
	case gapAbsent:
		return protocol.GapDeviceAbsent
	case gapLost:
		return protocol.GapDeviceLost
	default:
		return protocol.GapNoSample
	}
}

// unitInfo is what records say about a unit.
type unitInfo struct {
	uuid, parent, model, profile string
	sliceNum, sliceDen           int
}

// share is a tenant's part of a held unit; weight >= 1.
type share struct {
	tenant, method string
	weight         int64
}

// heldUnit is one unit of the latest observation: it describes the unit
// until the next observation, for at most MaxHold.
type heldUnit struct {
	info      unitInfo
	lost      bool
	util      int   // device.Unknown when not read
	energy    int64 // counter baseline, device.Unknown when not read
	shares    []share
	splitRule string
	gen       uint64
}

// set copies o into h. Shares are copied (the caller may reuse its slices),
// sorted by tenant and merged per tenant, so split ties go to the lexically
// smaller tenant whatever the input order. keepEnergy keeps h's counter
// baseline when o's counter is readable.
func (h *heldUnit) set(o *attribution.Observation, keepEnergy bool) {
	u := &o.Unit
	h.info = unitInfo{uuid: u.UUID, parent: u.ParentUUID, model: u.Model, profile: u.Profile,
		sliceNum: u.SliceNum, sliceDen: u.SliceDen}
	h.lost = o.Lost()
	h.util = u.UtilizationPercent
	if h.lost || h.util < 0 {
		h.util = device.Unknown
	}
	switch {
	case h.lost || u.EnergyMillijoules < 0:
		h.energy = device.Unknown
	case !keepEnergy:
		h.energy = u.EnergyMillijoules
	}
	h.splitRule = o.SplitRule
	h.shares = h.shares[:0]
	for _, s := range o.Shares {
		t := s.Tenant
		if t == "" {
			t = attribution.Unattributed
		}
		h.shares = append(h.shares, share{tenant: t, method: s.Method, weight: max(s.Weight, 1)})
	}
	if !slices.IsSortedFunc(h.shares, cmpShare) {
		slices.SortStableFunc(h.shares, cmpShare)
	}
	// Merge duplicates (the contract says one entry per tenant; be exact anyway).
	n := 0
	for i := range h.shares {
		if n > 0 && h.shares[n-1].tenant == h.shares[i].tenant {
			h.shares[n-1].weight += h.shares[i].weight
			continue
		}
		h.shares[n] = h.shares[i]
		n++
	}
	h.shares = h.shares[:n]
}

func cmpShare(a, b share) int { return strings.Compare(a.tenant, b.tenant) }

// window accumulates one window's time per unit.
type window struct {
	start, end int64
	units      map[string]*unitAcc
}

// acc is time with its utilization and energy, summed exactly.
type acc struct {
	ms          int64
	utilSum     int64 // Σ pct·ms over utilMs
	utilMs      int64 // ms whose utilization was known
	energy      int64
	energyKnown bool
}

type tenantAcc struct {
	tenant string
	acc
	method     string
	methodMs   int64 // the longest part's ms, for method
	sharedWith int
	splitRule  string
	// frac is the exact part below 1 ms of the tenant's shares of split
	// intervals in this window; see split.go.
	frac frac
	tie  uint64 // settle's scratch: tieKey of this tenant
}

// unitAcc is one unit's time in one window.
type unitAcc struct {
	info    unitInfo
	tenants []tenantAcc
	idle    acc
	gaps    [numGaps]int64
	// pending is the sum of the tenants' fracs: whole milliseconds of split
	// time that settle hands out when the window closes.
	pending int64
	cands   []int // scratch for settle
}

func (a *acc) add(ms int64, util int, energy int64, energyKnown bool) {
	a.ms += ms
	a.addReadings(ms, util, energy, energyKnown)
}

// addReadings adds the utilization and energy of ms milliseconds without
// the time itself: a split interval's time is added exactly (addExact),
// its readings by the interval's integer parts.
func (a *acc) addReadings(ms int64, util int, energy int64, energyKnown bool) {
	if util >= 0 {
		a.utilSum += int64(util) * ms
		a.utilMs += ms
	}
	if energyKnown {
		a.energy += energy
		a.energyKnown = true
	}
}

// tenant returns the index of tenant's accumulator, adding it if new.
func (u *unitAcc) tenant(name string) int {
	for i := range u.tenants {
		if u.tenants[i].tenant == name {
			return i
		}
	}
	u.tenants = append(u.tenants, tenantAcc{tenant: name})
	return len(u.tenants) - 1
}

func (u *unitAcc) eachTotal(uuid string, f func(TotalsKey, int64)) {
	for i := range u.tenants {
		if t := &u.tenants[i]; t.ms > 0 {
			f(TotalsKey{Tenant: t.tenant, UnitUUID: uuid, Kind: protocol.KindUsage}, t.ms)
		}
	}
	if u.idle.ms > 0 {
		f(TotalsKey{UnitUUID: uuid, Kind: protocol.KindIdle}, u.idle.ms)
	}
	for g, ms := range u.gaps {
		if ms > 0 {
			f(TotalsKey{UnitUUID: uuid, Kind: protocol.KindGap, GapReason: gapReason(g)}, ms)
		}
	}
}

func (m *Meter) newWindow(start, end int64) *window {
	if n := len(m.freeWins); n > 0 {
		w := m.freeWins[n-1]
		m.freeWins = m.freeWins[:n-1]
		w.start, w.end = start, end
		return w
	}
	return &window{start: start, end: end, units: make(map[string]*unitAcc)}
}

// unitIn returns the unit's accumulator in w, creating it if new, and keeps
// its identity fields those of the latest observation.
func (m *Meter) unitIn(w *window, info *unitInfo) (u *unitAcc, created bool) {
	u = w.units[info.uuid]
	if u == nil {
		if n := len(m.freeUnits); n > 0 {
			u = m.freeUnits[n-1]
			m.freeUnits = m.freeUnits[:n-1]
		} else {
			u = &unitAcc{}
		}
		w.units[info.uuid] = u
		created = true
	}
	u.info = *info
	return u, created
}

func (m *Meter) release(w *window) {
	for _, u := range w.units {
		*u = unitAcc{tenants: u.tenants[:0], cands: u.cands[:0]}
		m.freeUnits = append(m.freeUnits, u)
	}
	clear(w.units)
	m.freeWins = append(m.freeWins, w)
}

// emit appends w's records in record order, adds them to the totals and
// moves the checkpoint's closed mark to w's end.
func (m *Meter) emit(out []protocol.Record, w *window) []protocol.Record {
	m.closedUntil, m.hasClosed = w.end, true
	m.uuids = m.uuids[:0]
	for uuid := range w.units {
		m.uuids = append(m.uuids, uuid)
	}
	slices.Sort(m.uuids)
	base := protocol.Record{
		Node: m.node, Provider: m.provider,
		WindowStart: time.UnixMilli(w.start).UTC(),
		WindowEnd:   time.UnixMilli(w.end).UTC(),
	}
	for _, uuid := range m.uuids {
		u := w.units[uuid]
		b := base
		b.GPUUUID, b.ParentUUID, b.Model = u.info.uuid, u.info.parent, u.info.model
		b.MIGProfile, b.SliceNum, b.SliceDen = u.info.profile, u.info.sliceNum, u.info.sliceDen
		u.settle(w.start, uuid)
		slices.SortFunc(u.tenants, func(a, b tenantAcc) int { return strings.Compare(a.tenant, b.tenant) })
		for i := range u.tenants {
			t := &u.tenants[i]
			if t.ms == 0 {
				continue
			}
			r := b
			r.Kind, r.Tenant, r.Attribution = protocol.KindUsage, t.tenant, t.method
			r.SharedWith, r.SplitRule = t.sharedWith, t.splitRule
			out = m.appendRecord(out, r, &t.acc, TotalsKey{Tenant: t.tenant, UnitUUID: uuid, Kind: protocol.KindUsage})
		}
		if u.idle.ms > 0 {
			r := b
			r.Kind = protocol.KindIdle
			out = m.appendRecord(out, r, &u.idle, TotalsKey{UnitUUID: uuid, Kind: protocol.KindIdle})
		}
		for g, ms := range u.gaps {
			if ms == 0 {
				continue
			}
			r := b
			r.Kind, r.GapReason = protocol.KindGap, gapReason(g)
			out = m.appendRecord(out, r, &acc{ms: ms}, TotalsKey{UnitUUID: uuid, Kind: protocol.KindGap, GapReason: gapReason(g)})
		}
	}
	return out
}

func (m *Meter) appendRecord(out []protocol.Record, r protocol.Record, a *acc, k TotalsKey) []protocol.Record {
	r.GPUMillis = a.ms
	r.UtilizationPercent = -1
	if a.utilMs > 0 {
		r.UtilizationPercent = int((2*a.utilSum + a.utilMs) / (2 * a.utilMs))
	}
	r.EnergyMillijoules = -1
	if a.energyKnown {
		r.EnergyMillijoules = a.energy
	}
	r.ID = r.ComputeID()
	m.closed[k] += a.ms
	return append(out, r)
}
