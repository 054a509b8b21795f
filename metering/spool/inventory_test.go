package spool_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// inventoryAt is an inventory record observed at t, told apart from others
// at the same instant by its agent string.
func inventoryAt(t time.Time, agent string) protocol.Record {
	r := protocol.Record{
		Node: node, Provider: "prov", WindowStart: t, WindowEnd: t, Kind: protocol.KindInventory,
		UtilizationPercent: protocol.Unknown, EnergyMillijoules: protocol.Unknown,
		Inventory: &protocol.Inventory{WindowMillis: 60_000, MergeWindowMillis: 1_800_000, Agent: agent,
			GPUs: []protocol.InventoryGPU{{UUID: "GPU-00000000-0000-4000-8000-000000000000", Model: "NVIDIA H100 80GB HBM3"}}},
	}
	r.ID = r.ComputeID()
	return r
}

// withoutInventories drops inventory records, for the usage checks.
func withoutInventories(recs []protocol.Record) []protocol.Record {
	var out []protocol.Record
	for _, r := range recs {
		if r.Kind != protocol.KindInventory {
			out = append(out, r)
		}
	}
	return out
}

// checkInventoryPlaces: the inventories of out are want's, unchanged and in
// order, and each stands between what was metered before its instant and
// what was metered from it on (the records it was appended between).
func checkInventoryPlaces(t *testing.T, want, out []protocol.Record) {
	t.Helper()
	var got []protocol.Record
	for i, r := range out {
		if r.Kind != protocol.KindInventory {
			continue
		}
		got = append(got, r)
		for j, o := range out {
			if o.Kind == protocol.KindInventory {
				continue
			}
			if j < i && o.WindowEnd.After(r.WindowStart) {
				t.Fatalf("record %d [%s, %s) is before the inventory at %s (record %d)", j, o.WindowStart, o.WindowEnd, r.WindowStart, i)
			}
			if j > i && o.WindowStart.Before(r.WindowStart) {
				t.Fatalf("record %d [%s, %s) is after the inventory at %s (record %d)", j, o.WindowStart, o.WindowEnd, r.WindowStart, i)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("inventories out:\n%+v\nwant, unchanged and in order:\n%+v", got, want)
	}
}

// TestMergeKeepsInventory merges a run holding inventory records: each
// comes out exactly as it went in, in its place, and the records on either
// side are merged as they would be without it.
func TestMergeKeepsInventory(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	windows := spool.RandomWindows(rng, node, t0.Add(1234*time.Millisecond), 90, 3, time.Minute)
	var in, invs []protocol.Record
	var segments [][]protocol.Record
	var seg []protocol.Record
	for i, w := range windows {
		if i == 20 || i == 47 || i == 48 {
			inv := inventoryAt(w[0].WindowStart, fmt.Sprint("build-", i))
			in, invs = append(in, inv), append(invs, inv)
			segments, seg = append(segments, seg), nil
		}
		in = append(in, w...)
		seg = append(seg, w...)
	}
	segments = append(segments, seg)
	out := spool.MergeRecords(in, 30*time.Minute)

	checkInventoryPlaces(t, invs, out)
	var want []protocol.Record
	for i, s := range segments {
		if i > 0 {
			want = append(want, invs[i-1])
		}
		want = append(want, spool.MergeRecords(s, 30*time.Minute)...)
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatal("a run with inventories merged unlike its parts between them")
	}
	checkInvariants(t, withoutInventories(out))
	checkTotals(t, withoutInventories(in), withoutInventories(out))
}

// TestAppendKeepsInventoryAlone: an inventory is an entry of its own, so
// one observed at a window's start stays ahead of that window's records
// in the batches, and a record with window start == end is accepted.
func TestAppendKeepsInventoryAlone(t *testing.T) {
	ctx := context.Background()
	s := openSpool(t, tempPath(t), spool.Options{})
	w0, w1 := windowRecs(0, 2), windowRecs(1, 2)
	for i := range w0 {
		w0[i].Provider, w1[i].Provider = "prov", "prov"
		w0[i].ID, w1[i].ID = w0[i].ComputeID(), w1[i].ComputeID()
	}
	inv := inventoryAt(w1[0].WindowStart, "v1")
	in := append(append(append([]protocol.Record{}, w0...), inv), w1...)
	if err := s.Append(ctx, in, []byte("cp")); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingRecords != int64(len(in)) {
		t.Fatalf("%d records pending, want %d", st.PendingRecords, len(in))
	}
	out := sealAndOpen(t, s)
	for i := range out {
		out[i].Seq = 0
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("sealed records differ from those appended, or their order:\n%+v\nwant\n%+v", out, in)
	}
}
