package ledger_test

import (
	"errors"
	"testing"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

func inventoryRecord(mut func(r *protocol.Record)) protocol.Record {
	r := protocol.Record{
		Node: "node-01", Provider: "p", Kind: protocol.KindInventory, WindowStart: t0, WindowEnd: t0,
		UtilizationPercent: protocol.Unknown, EnergyMillijoules: protocol.Unknown,
		Inventory: &protocol.Inventory{WindowMillis: 60000, MergeWindowMillis: 3600000, GPUs: []protocol.InventoryGPU{
			{UUID: "GPU-00000000-0000-4000-8000-000000000000", Model: "NVIDIA H100 80GB HBM3"},
			{UUID: "GPU-00000000-0000-4000-8000-000000000001", Model: "NVIDIA H100 80GB HBM3", MIGEnabled: true,
				Instances: []protocol.InventoryInstance{{UUID: "MIG-00000000-0000-4000-9000-000000000001", Profile: "3g.40gb", GPUInstanceID: 2}}},
		}},
	}
	if mut != nil {
		mut(&r)
	}
	r.ID = r.ComputeID()
	return r
}

func TestCheckRecordInventory(t *testing.T) {
	mig := func(r *protocol.Record) *protocol.InventoryInstance { return &r.Inventory.GPUs[1].Instances[0] }
	tests := []struct {
		name string
		mut  func(r *protocol.Record)
		want error // nil: valid
	}{
		{"valid", nil, nil},
		{"no inventory", func(r *protocol.Record) { r.Inventory = nil }, ledger.ErrKindFields},
		{"a span, not an instant", func(r *protocol.Record) { r.WindowEnd = t0.Add(1) }, ledger.ErrKindFields},
		{"gpu time", func(r *protocol.Record) { r.GPUMillis = 1 }, ledger.ErrKindFields},
		{"a tenant", func(r *protocol.Record) { r.Tenant = "acme" }, ledger.ErrKindFields},
		{"no window", func(r *protocol.Record) { r.Inventory.WindowMillis = 0 }, ledger.ErrInvalidInventory},
		{"merge window not a multiple", func(r *protocol.Record) { r.Inventory.MergeWindowMillis = 90000 }, ledger.ErrInvalidInventory},
		{"no GPU", func(r *protocol.Record) { r.Inventory.GPUs = nil }, ledger.ErrInvalidInventory},
		{"GPU twice", func(r *protocol.Record) { r.Inventory.GPUs[1] = r.Inventory.GPUs[0] }, ledger.ErrInvalidInventory},
		{"instances with MIG off", func(r *protocol.Record) { r.Inventory.GPUs[1].MIGEnabled = false }, ledger.ErrInvalidInventory},
		{"instance without profile", func(r *protocol.Record) { mig(r).Profile = "" }, ledger.ErrInvalidInventory},
		{"upper-case GPU UUID", func(r *protocol.Record) { r.Inventory.GPUs[0].UUID = "GPU-00000000-0000-4000-8000-00000000000A" }, ledger.ErrInvalidUUID},
		{"made-up MIG UUID", func(r *protocol.Record) { mig(r).UUID = "MIG-x" }, ledger.ErrInvalidUUID},
		{"control character in a model", func(r *protocol.Record) { r.Inventory.GPUs[0].Model = "H100\x07" }, ledger.ErrInvalidInventory},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := inventoryRecord(tc.mut)
			err := ledger.CheckRecord(&r)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckRecord = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckRecord = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestInventoryDigestIsInTheID(t *testing.T) {
	a := inventoryRecord(nil)
	b := inventoryRecord(func(r *protocol.Record) { r.Inventory.GPUs[1].Instances[0].Profile = "4g.40gb" })
	if a.ID == b.ID {
		t.Fatalf("two inventories at one instant share id %s", a.ID)
	}
}
