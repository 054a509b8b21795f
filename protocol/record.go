package protocol

// A record covers one (unit, window, kind[, tenant]). For every unit and
// every window the meter closes, the GPU-milliseconds of that unit's usage,
// idle and gap records sum exactly to WindowEnd-WindowStart.

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Kind of a record.
type Kind string

const (
	KindUsage Kind = "usage" // a tenant's processes were on the unit
	KindIdle  Kind = "idle"  // the unit was readable and had no compute process
	KindGap   Kind = "gap"   // the unit's state is not known: never billable
)

// TenantUnattributed is the tenant of usage that no attribution rule
// claimed. It is reserved: never billable, never mapped to an entity, and
// no attribution rule may name it.
const TenantUnattributed = "unattributed"

// Gap reasons.
const (
	GapDeviceLost   = "device_lost"   // GPU_IS_LOST, fell off the bus, unreadable
	GapDeviceAbsent = "device_absent" // unit did not exist (MIG reconfiguration, hot-plug)
	GapNoSample     = "no_sample"     // no observation for longer than max_hold
	GapAgentDown    = "agent_down"    // the agent was not running
	// GapSpoolLost: the node's spool was lost or damaged and replaced by a
	// new one that continues the chain from the authority's head; what the
	// lost spool held after that head is unknown.
	GapSpoolLost = "spool_lost"
)

// Unknown marks a utilization or energy the device does not report.
const Unknown = -1

// GapReasons are the gap reasons a record may carry.
var GapReasons = []string{GapDeviceLost, GapDeviceAbsent, GapNoSample, GapAgentDown, GapSpoolLost}

// ValidGapReason reports whether s is one of GapReasons.
func ValidGapReason(s string) bool {
	for _, g := range GapReasons {
		if s == g {
			return true
		}
	}
	return false
}

// Record is one usage record. Times are UTC with millisecond precision.
type Record struct {
	ID string `json:"id"`
	// Seq is the record's per-node sequence number, assigned when its batch
	// is committed to the spool (0 until then).
	Seq         uint64    `json:"seq,omitempty"`
	Node        string    `json:"node"`
	Provider    string    `json:"provider"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Kind        Kind      `json:"kind"`
	Tenant      string    `json:"tenant,omitempty"`
	GPUUUID     string    `json:"gpu_uuid"`    // the metered unit: GPU-... or MIG-...
	ParentUUID  string    `json:"parent_uuid"` // the physical GPU
	Model       string    `json:"model"`
	MIGProfile  string    `json:"mig_profile,omitempty"`
	SliceNum    int       `json:"slice_num"` // unit's share of the GPU: SliceNum/SliceDen
	SliceDen    int       `json:"slice_den"`
	GPUMillis   int64     `json:"gpu_ms"`
	// UtilizationPercent is the time-weighted mean SM utilization over this
	// record's milliseconds, or -1 where the device does not report it.
	UtilizationPercent int `json:"utilization_pct"`
	// EnergyMillijoules is the energy the GPU drew during this record's
	// milliseconds, or -1 where the device does not report it (MIG).
	EnergyMillijoules int64  `json:"energy_mj"`
	Attribution       string `json:"attribution,omitempty"` // usage: how the tenant was found
	// SharedWith is the number of other tenants on the unit at some point in
	// this record's time (time-slicing); SplitRule says how it was divided.
	SharedWith int    `json:"shared_with,omitempty"`
	SplitRule  string `json:"split_rule,omitempty"`
	GapReason  string `json:"gap_reason,omitempty"`
	// Inventory is set on records of KindInventory only.
	Inventory *Inventory `json:"inventory,omitempty"`
}

// Duration is the record's window length.
func (r Record) Duration() time.Duration { return r.WindowEnd.Sub(r.WindowStart) }

// ComputeID derives the record's stable identity from what it is about, so
// the same usage always has the same id (the authority's dedup key). Each
// field is length-prefixed so no two field lists hash alike.
func (r Record) ComputeID() string {
	var buf [256]byte
	b := buf[:0]
	field := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
		b = append(b, ';')
	}
	num := func(n int64) {
		var nb [20]byte
		field(string(strconv.AppendInt(nb[:0], n, 10)))
	}
	field(r.Node)
	field(r.GPUUUID)
	num(r.WindowStart.UnixMilli())
	num(r.WindowEnd.UnixMilli())
	field(string(r.Kind))
	field(r.Tenant)
	field(r.GapReason)
	if r.Inventory != nil {
		field(r.Inventory.Digest())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// FormatHours writes milliseconds of GPU time as GPU-hours with three
// decimals, truncated, in integer arithmetic (never through a float).
func FormatHours(ms int64) string {
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	return sign + strconv.FormatInt(ms/3_600_000, 10) + "." + fmt3(ms%3_600_000*1000/3_600_000)
}

func fmt3(n int64) string {
	s := strconv.FormatInt(n, 10)
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}
