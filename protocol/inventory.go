package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// KindInventory is the kind of a record that carries no GPU time but the
// node's inventory (Record.Inventory): what GPUs it has, their models, MIG
// mode and layout, and how it meters. An agent appends one when it starts
// and whenever the layout changes, to the same signed chain as its usage,
// so the authority knows which units a GPU had at any time.
//
// An inventory record has WindowStart == WindowEnd == the instant the
// inventory was observed (on the agent's metering timeline), gpu_ms 0,
// no tenant, unit, model, slice or gap reason, and utilization and energy
// Unknown (-1).
const KindInventory Kind = "inventory"

// Inventory is a node's report of itself at one instant.
type Inventory struct {
	// WindowMillis is the meter's window (records of a run are aligned
	// windows of this length, or parts of one at a start or stop).
	WindowMillis int64 `json:"window_ms"`
	// MergeWindowMillis is the spool's merge window: under its cap the spool
	// merges a run of windows into one record per unit, tenant and kind,
	// inside one aligned bucket of this length. 0: the node never merges.
	MergeWindowMillis int64 `json:"merge_window_ms"`
	// Agent names the agent's build (informational).
	Agent string         `json:"agent,omitempty"`
	GPUs  []InventoryGPU `json:"gpus"`
}

// InventoryGPU is one physical GPU as the node sees it.
type InventoryGPU struct {
	UUID       string `json:"uuid"`  // GPU-..., canonical (CanonicalGPUUUID)
	Model      string `json:"model"` // the name NVML gives
	MIGEnabled bool   `json:"mig_enabled"`
	// Instances is the MIG layout when MIGEnabled (empty otherwise).
	Instances []InventoryInstance `json:"instances,omitempty"`
}

// InventoryInstance is one MIG instance of a GPU's layout.
type InventoryInstance struct {
	UUID              string `json:"uuid"`    // MIG-..., canonical (CanonicalMIGUUID)
	Profile           string `json:"profile"` // e.g. "1g.10gb"
	GPUInstanceID     int    `json:"gi"`
	ComputeInstanceID int    `json:"ci"`
}

// Digest is the hex sha256 of the inventory's JSON: a record's identity
// covers it, so two inventories observed in one millisecond differ.
func (inv *Inventory) Digest() string {
	b, err := json.Marshal(inv)
	if err != nil { // plain structs of strings, ints and bools cannot fail
		panic("protocol: marshal inventory: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// InventoryRecord is the record that reports inv, observed at at (UTC,
// whole milliseconds), for node of provider, with its id computed.
func InventoryRecord(node, provider string, at time.Time, inv Inventory) Record {
	at = at.UTC().Truncate(time.Millisecond)
	r := Record{Node: node, Provider: provider, Kind: KindInventory, WindowStart: at, WindowEnd: at,
		UtilizationPercent: Unknown, EnergyMillijoules: Unknown, Inventory: &inv}
	r.ID = r.ComputeID()
	return r
}

// WholeGPUs is an inventory of whole GPUs (MIG off) of one model, metered
// in windows of window: what a node without MIG reports.
func WholeGPUs(window time.Duration, model string, uuids ...string) Inventory {
	inv := Inventory{WindowMillis: window.Milliseconds(), GPUs: make([]InventoryGPU, len(uuids))}
	for i, u := range uuids {
		inv.GPUs[i] = InventoryGPU{UUID: u, Model: model}
	}
	return inv
}
