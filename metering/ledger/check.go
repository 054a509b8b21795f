package ledger

import (
	"errors"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/gpumeter/gpumeter/protocol"
)

// CheckRecord reports whether r is acceptable on its own, as Open checks
// it (the record rules of the package doc); the error wraps the Cause of
// the rule broken. The spool refuses such records at Append, so one bad
// record cannot block sealing, and the agent never seals what the
// authority would refuse for its shape.
func CheckRecord(r *protocol.Record) error {
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("record %s: %w", r.ID, err)
	}
	return nil
}

// checkRecord applies the rules every record must follow whoever checks
// it: names, canonical UUIDs, the fields each kind may carry, and values
// in range. Its errors wrap a Cause.
func checkRecord(r *protocol.Record) error {
	if err := protocol.CheckName("node", r.Node); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	if err := protocol.CheckName("provider", r.Provider); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	switch r.Kind {
	case protocol.KindInventory:
		return checkInventoryRecord(r)
	case protocol.KindUsage, protocol.KindIdle, protocol.KindGap:
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidRecord, r.Kind)
	}
	if r.Inventory != nil {
		return fmt.Errorf("%w: a %s record carries an inventory", ErrKindFields, r.Kind)
	}
	if err := checkKindFields(r); err != nil {
		return err
	}
	if r.GPUMillis < 0 {
		return fmt.Errorf("%w: negative gpu_ms %d", ErrInvalidRecord, r.GPUMillis)
	}
	if !r.WindowEnd.After(r.WindowStart) {
		return fmt.Errorf("%w: window_end %s not after window_start %s", ErrInvalidRecord, r.WindowEnd, r.WindowStart)
	}
	parent, err := protocol.CanonicalGPUUUID(r.ParentUUID)
	if err != nil || parent != r.ParentUUID {
		return fmt.Errorf("%w: parent_uuid %q is not a canonical GPU UUID (GPU-<lower-case uuid>)", ErrInvalidUUID, r.ParentUUID)
	}
	if r.MIGProfile == "" {
		if r.GPUUUID != r.ParentUUID {
			return fmt.Errorf("%w: gpu_uuid %q of a whole GPU differs from parent_uuid %q", ErrInvalidUUID, r.GPUUUID, r.ParentUUID)
		}
	} else if mig, err := protocol.CanonicalMIGUUID(r.GPUUUID); err != nil || mig != r.GPUUUID {
		return fmt.Errorf("%w: gpu_uuid %q of a MIG instance is not a canonical MIG UUID", ErrInvalidUUID, r.GPUUUID)
	}
	if r.SliceNum < 1 || r.SliceDen < 1 || r.SliceNum > r.SliceDen || (r.MIGProfile == "" && r.SliceNum != r.SliceDen) {
		return fmt.Errorf("%w: slice %d/%d is not a share of one GPU", ErrSliceMismatch, r.SliceNum, r.SliceDen)
	}
	if r.UtilizationPercent != protocol.Unknown && (r.UtilizationPercent < 0 || r.UtilizationPercent > 100) {
		return fmt.Errorf("%w: utilization_pct %d outside 0-100 (or -1, unknown)", ErrInvalidValue, r.UtilizationPercent)
	}
	if r.EnergyMillijoules != protocol.Unknown && r.EnergyMillijoules < 0 {
		return fmt.Errorf("%w: energy_mj %d is negative (and not -1, unknown)", ErrInvalidValue, r.EnergyMillijoules)
	}
	if r.SharedWith < 0 {
		return fmt.Errorf("%w: shared_with %d is negative", ErrInvalidValue, r.SharedWith)
	}
	return nil
}

// checkKindFields: usage has a tenant (a valid name) and no gap reason;
// idle has neither, nor attribution or sharing; a gap has a known reason
// and no tenant, attribution or sharing.
func checkKindFields(r *protocol.Record) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s record: %s", ErrKindFields, r.Kind, fmt.Sprintf(format, a...))
	}
	switch r.Kind {
	case protocol.KindUsage:
		if r.Tenant == "" {
			return bad("no tenant")
		}
		if err := protocol.CheckName("tenant", r.Tenant); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidName, err)
		}
		if r.GapReason != "" {
			return bad("gap_reason %q (usage has none)", r.GapReason)
		}
		return nil
	case protocol.KindGap:
		if !protocol.ValidGapReason(r.GapReason) {
			return bad("gap_reason %q is not one of %v", r.GapReason, protocol.GapReasons)
		}
	case protocol.KindIdle:
		if r.GapReason != "" {
			return bad("gap_reason %q (idle has none)", r.GapReason)
		}
	}
	switch {
	case r.Tenant != "":
		return bad("tenant %q (only usage has a tenant)", r.Tenant)
	case r.Attribution != "" || r.SharedWith != 0 || r.SplitRule != "":
		return bad("attribution, shared_with or split_rule (only usage has them)")
	}
	return nil
}

// checkInventoryRecord: an inventory record is an instant (window_start ==
// window_end), carries an inventory and nothing of a usage record.
func checkInventoryRecord(r *protocol.Record) error {
	inv := r.Inventory
	switch {
	case inv == nil:
		return fmt.Errorf("%w: inventory record without an inventory", ErrKindFields)
	case !r.WindowEnd.Equal(r.WindowStart):
		return fmt.Errorf("%w: inventory record: window_end must equal window_start (an instant)", ErrKindFields)
	case r.Tenant != "" || r.GapReason != "" || r.GPUUUID != "" || r.ParentUUID != "" || r.Model != "" ||
		r.MIGProfile != "" || r.SliceNum != 0 || r.SliceDen != 0 || r.GPUMillis != 0 || r.Attribution != "" ||
		r.SharedWith != 0 || r.SplitRule != "":
		return fmt.Errorf("%w: inventory record carries usage fields", ErrKindFields)
	case r.UtilizationPercent != protocol.Unknown || r.EnergyMillijoules != protocol.Unknown:
		return fmt.Errorf("%w: inventory record: utilization_pct and energy_mj must be -1", ErrKindFields)
	}
	if inv.WindowMillis <= 0 || inv.MergeWindowMillis < 0 {
		return fmt.Errorf("%w: inventory window_ms %d, merge_window_ms %d", ErrInvalidInventory, inv.WindowMillis, inv.MergeWindowMillis)
	}
	if inv.MergeWindowMillis != 0 && (inv.MergeWindowMillis < inv.WindowMillis || inv.MergeWindowMillis%inv.WindowMillis != 0) {
		return fmt.Errorf("%w: merge_window_ms %d is not a multiple of window_ms %d", ErrInvalidInventory, inv.MergeWindowMillis, inv.WindowMillis)
	}
	if len(inv.GPUs) == 0 {
		return fmt.Errorf("%w: inventory lists no GPU", ErrInvalidInventory)
	}
	seen := map[string]bool{}
	for i, g := range inv.GPUs {
		if c, err := protocol.CanonicalGPUUUID(g.UUID); err != nil || c != g.UUID {
			return fmt.Errorf("%w: inventory GPU %d: uuid %q is not canonical", ErrInvalidUUID, i, g.UUID)
		}
		if err := protocol.CheckName("inventory model", g.Model); err != nil {
			return fmt.Errorf("%w: inventory GPU %s: %v", ErrInvalidInventory, g.UUID, err)
		}
		if !g.MIGEnabled && len(g.Instances) > 0 {
			return fmt.Errorf("%w: inventory GPU %s lists MIG instances with MIG off", ErrInvalidInventory, g.UUID)
		}
		if seen[g.UUID] {
			return fmt.Errorf("%w: inventory lists %s twice", ErrInvalidInventory, g.UUID)
		}
		seen[g.UUID] = true
		for _, in := range g.Instances {
			if c, err := protocol.CanonicalMIGUUID(in.UUID); err != nil || c != in.UUID {
				return fmt.Errorf("%w: inventory GPU %s: instance uuid %q is not canonical", ErrInvalidUUID, g.UUID, in.UUID)
			}
			if in.Profile == "" {
				return fmt.Errorf("%w: inventory instance %s has no profile", ErrInvalidInventory, in.UUID)
			}
			if seen[in.UUID] {
				return fmt.Errorf("%w: inventory lists %s twice", ErrInvalidInventory, in.UUID)
			}
			seen[in.UUID] = true
		}
	}
	return nil
}

// strictUnmarshal decodes data into v in one pass with the JSON v2
// decoder, which refuses what two readers of the signed bytes could read
// differently: a member repeated in any object (errDuplicateKey; v1 keeps
// the last "gpu_ms"), a member no field has, names matched only exactly
// ("GPU_MS" is not gpu_ms: it is an unknown member), invalid UTF-8, and
// anything after the value. Its errors name the member by JSON pointer
// ("/records/3/gpu_ms").
func strictUnmarshal(data []byte, v any) error {
	err := json.Unmarshal(data, v, json.RejectUnknownMembers(true))
	if errors.Is(err, jsontext.ErrDuplicateName) {
		return fmt.Errorf("%w: %v", errDuplicateKey, err)
	}
	return err
}

// errDuplicateKey marks a repeated member (a Cause of its own).
var errDuplicateKey = errors.New("repeated member")
