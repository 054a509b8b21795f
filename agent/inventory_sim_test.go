package agent_test

import (
	"slices"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestInventoryFollowsMIGReconfiguration meters the shipped scenario that
// re-partitions an H100 at 0:30 through the whole pipeline. The records
// hold two inventories: 7 x 1g.10gb at the start and 3g.40gb + 4g.40gb at
// 0:30, each at its observation instant in virtual time, after every
// record metered before it and ahead of every record holding a unit of
// its layout; and every record's unit is an instance, with its profile,
// of the layout reported in force during its window, as the authority
// checks it.
func TestInventoryFollowsMIGReconfiguration(t *testing.T) {
	s := sc(t, "../configs/scenarios/mig-reconfigure.yaml")
	recs := simulate(t, s)

	var at []int // indexes of the inventory records
	for i := range recs {
		if err := ledger.CheckRecord(&recs[i]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if recs[i].Kind == protocol.KindInventory {
			at = append(at, i)
		}
	}
	if len(at) != 2 {
		t.Fatalf("%d inventory records, want 2 (the start, the reconfiguration)", len(at))
	}
	want := []struct {
		instant  time.Time
		profiles []string
	}{
		{s.Start, []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}},
		{s.Start.Add(30 * time.Minute), []string{"3g.40gb", "4g.40gb"}},
	}
	profileOf := make([]map[string]string, len(at)) // per inventory: MIG UUID → profile
	for k, i := range at {
		r := recs[i]
		inv := r.Inventory
		if !r.WindowStart.Equal(want[k].instant) || !r.WindowEnd.Equal(r.WindowStart) {
			t.Errorf("inventory %d at [%s, %s], want the instant %s", k, r.WindowStart, r.WindowEnd, want[k].instant)
		}
		if inv.WindowMillis != 60_000 || inv.MergeWindowMillis != 0 || len(inv.GPUs) != 1 {
			t.Fatalf("inventory %d: %+v, want 1 GPU, 1 min windows, no merging", k, inv)
		}
		g := inv.GPUs[0]
		if g.UUID != "GPU-3c0f1600-0000-4000-8000-000000000000" || g.Model != "NVIDIA H100 80GB HBM3" || !g.MIGEnabled {
			t.Errorf("inventory %d GPU %+v", k, g)
		}
		var profiles []string
		profileOf[k] = map[string]string{}
		for _, in := range g.Instances {
			profiles = append(profiles, in.Profile)
			profileOf[k][in.UUID] = in.Profile
		}
		slices.Sort(profiles)
		if !slices.Equal(profiles, want[k].profiles) || len(profileOf[k]) != len(want[k].profiles) {
			t.Errorf("inventory %d layout %v, want %v with distinct UUIDs", k, profiles, want[k].profiles)
		}
	}

	first := []int{-1, -1} // per layout: its first record
	for i, r := range recs {
		if r.Kind == protocol.KindInventory {
			continue
		}
		// The layout in force during the record's window: the last
		// inventory at or before its start.
		k := 0
		if !r.WindowStart.Before(recs[at[1]].WindowStart) {
			k = 1
		}
		if p, ok := profileOf[k][r.GPUUUID]; !ok || p != r.MIGProfile || r.ParentUUID != recs[at[k]].Inventory.GPUs[0].UUID {
			t.Fatalf("record %d (%s, unit %s %s, [%s, %s)) is not a unit of the layout in force then (inventory %d)",
				i, r.Kind, r.GPUUUID, r.MIGProfile, r.WindowStart, r.WindowEnd, k)
		}
		if first[k] < 0 {
			first[k] = i
		}
		// The reconfiguration is on a window boundary: nothing closed
		// before it comes after its inventory, nothing after before it.
		if before := i < at[1]; before != !r.WindowEnd.After(recs[at[1]].WindowStart) {
			t.Errorf("record %d [%s, %s) is on the wrong side of the inventory at %s", i, r.WindowStart, r.WindowEnd, recs[at[1]].WindowStart)
		}
	}
	for k := range at {
		if first[k] < at[k] {
			t.Errorf("layout %d's first record is record %d, ahead of its inventory (record %d)", k, first[k], at[k])
		}
	}
}
