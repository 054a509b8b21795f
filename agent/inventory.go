package agent

import (
	"cmp"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// InventoryOptions say how the node meters, for its inventory records
// (protocol.KindInventory). The authority pays a MIG record only if its
// unit is an instance of its GPU's layout reported in force at that time,
// so the agent reports the layout in the same signed chain as its usage.
type InventoryOptions struct {
	// Node and Provider are those of the meter's records.
	Node, Provider string
	// Window is the meter's window (metering.window). Zero: the pipeline
	// makes no inventory records (tests and benchmarks of other stages).
	Window time.Duration
	// MergeWindow is the spool's merge window (spool.merge_window) when the
	// spool has a cap and so may merge; 0 when it never merges.
	MergeWindow time.Duration
	// Agent is the agent's build version ("" if unknown).
	Agent string
}

// inventory makes the pipeline's inventory records. One is made at the
// first observation after every start (the authority cannot know what a
// node that restarted still has) and whenever the inventory observed
// differs from the one reported last: a GPU appears or leaves enumeration,
// or a GPU's model, MIG mode or MIG layout changes. Layouts are compared
// as sets (sorted), not in the order NVML lists them.
//
// A GPU the collector cannot read keeps its last known identity in the
// snapshot (model, MIG mode, instances), so a lost GPU changes nothing
// here; one no longer enumerated (device.ErrNotEnumerated) is left out
// until it is back. A snapshot with no GPU in it makes no record (the
// protocol has no empty inventory): the last one reported stays in force.
//
// Timing: the record is the instant of the observation, at its position
// on the meter's timeline (Pipeline.position: virtual time on a simulated
// node), and Cycle returns it after the records of the windows that the
// same observation closed. Those windows all end at or before that
// instant, and the units of a new layout are first seen at it, so they
// are in windows still open: the record reaches the spool in order, after
// everything metered before the change and ahead of every record that
// holds a unit of the new layout.
type inventory struct {
	opts InventoryOptions
	log  *slog.Logger

	// reported are the GPUs of the last record made (or refused by the
	// check below); nil until the first observation of this start. A
	// record holds them, so they are replaced, never written to.
	reported []protocol.InventoryGPU
	// scratch is the inventory of the latest observation, rebuilt in the
	// same memory at every poll: it nearly never differs from reported,
	// and a poll should not allocate to find that out.
	scratch []protocol.InventoryGPU
}

// observe returns the inventory record due at the observation snap made
// at position at (Unix ms), if one is.
func (iv *inventory) observe(snap device.Snapshot, at int64) (protocol.Record, bool) {
	iv.scratch = appendInventoryGPUs(iv.scratch[:0], snap)
	if len(iv.scratch) == 0 || (iv.reported != nil && slices.EqualFunc(iv.scratch, iv.reported, sameGPU)) {
		return protocol.Record{}, false
	}
	gpus := cloneInventoryGPUs(iv.scratch)
	iv.reported = gpus
	t := time.UnixMilli(at).UTC()
	r := protocol.Record{
		Node: iv.opts.Node, Provider: iv.opts.Provider, WindowStart: t, WindowEnd: t, Kind: protocol.KindInventory,
		UtilizationPercent: protocol.Unknown, EnergyMillijoules: protocol.Unknown,
		Inventory: &protocol.Inventory{
			WindowMillis: iv.opts.Window.Milliseconds(), MergeWindowMillis: iv.opts.MergeWindow.Milliseconds(),
			Agent: iv.opts.Agent, GPUs: gpus,
		},
	}
	r.ID = r.ComputeID()
	// The spool refuses a whole append holding a record the authority
	// would refuse: never let one block the usage behind it.
	if err := ledger.CheckRecord(&r); err != nil {
		if iv.log != nil {
			iv.log.Error("inventory not reported: the authority would refuse it; MIG usage is not paid until a valid one is",
				"at", t, "err", err)
		}
		return protocol.Record{}, false
	}
	if iv.log != nil {
		iv.log.Info("inventory reported", "at", t, "gpus", len(gpus))
	}
	return r, true
}

// appendInventoryGPUs appends the snapshot's inventory to gpus, sorted:
// GPUs by UUID, each GPU's instances by GPU instance id, compute instance
// id, then UUID. UUIDs are the collector's, canonical. It reuses the
// instance lists beyond len(gpus) (a GPU without MIG gets an empty one):
// cloneInventoryGPUs makes what a record may keep.
func appendInventoryGPUs(gpus []protocol.InventoryGPU, snap device.Snapshot) []protocol.InventoryGPU {
	for i := range snap.Devices {
		d := &snap.Devices[i]
		if errors.Is(d.Err, device.ErrNotEnumerated) {
			continue
		}
		var reuse []protocol.InventoryInstance
		if len(gpus) < cap(gpus) {
			reuse = gpus[:cap(gpus)][len(gpus)].Instances[:0] // the list this slot held at the last poll
		}
		g := protocol.InventoryGPU{UUID: d.UUID, Model: d.Model, MIGEnabled: d.MIGEnabled, Instances: reuse}
		if d.MIGEnabled {
			for _, in := range d.Instances {
				g.Instances = append(g.Instances, protocol.InventoryInstance{UUID: in.UUID, Profile: in.Profile,
					GPUInstanceID: in.GPUInstanceID, ComputeInstanceID: in.ComputeInstanceID})
			}
			slices.SortFunc(g.Instances, func(a, b protocol.InventoryInstance) int {
				return cmp.Or(cmp.Compare(a.GPUInstanceID, b.GPUInstanceID),
					cmp.Compare(a.ComputeInstanceID, b.ComputeInstanceID), cmp.Compare(a.UUID, b.UUID))
			})
		}
		gpus = append(gpus, g)
	}
	slices.SortFunc(gpus, func(a, b protocol.InventoryGPU) int { return cmp.Compare(a.UUID, b.UUID) })
	return gpus
}

// cloneInventoryGPUs copies gpus into memory of their own, a GPU without
// instances with none (nil), as the record carries them.
func cloneInventoryGPUs(gpus []protocol.InventoryGPU) []protocol.InventoryGPU {
	out := make([]protocol.InventoryGPU, len(gpus))
	for i, g := range gpus {
		out[i] = g
		out[i].Instances = nil
		if len(g.Instances) > 0 {
			out[i].Instances = slices.Clone(g.Instances)
		}
	}
	return out
}

func sameGPU(a, b protocol.InventoryGPU) bool {
	return a.UUID == b.UUID && a.Model == b.Model && a.MIGEnabled == b.MIGEnabled && slices.Equal(a.Instances, b.Instances)
}
