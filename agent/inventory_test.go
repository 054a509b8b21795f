package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

const (
	invGPU0 = "GPU-00000000-0000-4000-8000-000000000000"
	invGPU1 = "GPU-00000000-0000-4000-8000-000000000001"
)

func invMIG(n int) device.Instance {
	return device.Instance{UUID: fmt.Sprintf("MIG-00000000-0000-4000-8000-%012d", n), GPUInstanceID: n, Profile: "1g.10gb",
		Slices: 1, TotalSlices: 7, Processes: []device.Process{{PID: uint32(100 + n)}}}
}

// invNode is a node of two H100s, GPU 1 in MIG mode with instances (in
// NVML's order) of the given GI ids.
func invNode(gis ...int) device.Snapshot {
	g1 := device.Device{Index: 1, UUID: invGPU1, Model: "NVIDIA H100 80GB HBM3", MIGEnabled: true}
	for _, gi := range gis {
		g1.Instances = append(g1.Instances, invMIG(gi))
	}
	return device.Snapshot{Devices: []device.Device{
		{Index: 0, UUID: invGPU0, Model: "NVIDIA H100 80GB HBM3", Processes: []device.Process{{PID: 7}}}, g1,
	}}
}

// TestInventoryWhenItChanges: a record at the first observation and at
// every change of the GPUs, a model or a MIG layout; none for a layout
// listed in another order, a GPU in error (it keeps its identity), or an
// observation with no GPU; a GPU gone from enumeration leaves the
// inventory until it is back.
func TestInventoryWhenItChanges(t *testing.T) {
	lost := invNode(1, 2)
	lost.Devices[1].Err = fmt.Errorf("GPU 1: %w", nvml.ERROR_GPU_IS_LOST)
	gone := invNode(1, 2)
	gone.Devices[0].Err = fmt.Errorf("GPU 0 (%s): %w", invGPU0, device.ErrNotEnumerated)
	migOff := invNode()
	migOff.Devices[1].MIGEnabled = false

	steps := []struct {
		name string
		snap device.Snapshot
		want string // the GPUs of the record due, "" for none
	}{
		{"first observation", invNode(1, 2), "GPU-0 [] | GPU-1 mig [1 2]"},
		{"same layout", invNode(1, 2), ""},
		{"same layout in another order", invNode(2, 1), ""},
		{"a GPU lost keeps its identity", lost, ""},
		{"no GPU at all", device.Snapshot{}, ""},
		{"a GPU no longer enumerated", gone, "GPU-1 mig [1 2]"},
		{"it is back", invNode(1, 2), "GPU-0 [] | GPU-1 mig [1 2]"},
		{"MIG reconfigured", invNode(1, 3, 4), "GPU-0 [] | GPU-1 mig [1 3 4]"},
		{"a model renamed", func() device.Snapshot { s := invNode(1, 3, 4); s.Devices[0].Model = "NVIDIA H100 NVL"; return s }(), "GPU-0 [] | GPU-1 mig [1 3 4]"},
		{"MIG off", migOff, "GPU-0 [] | GPU-1 []"},
		{"MIG on without instances", invNode(), "GPU-0 [] | GPU-1 mig []"},
	}
	iv := inventory{opts: InventoryOptions{Node: "n1", Provider: "p1", Window: time.Minute, MergeWindow: time.Hour, Agent: "v9"}}
	at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i, st := range steps {
		at += 1500
		r, ok := iv.observe(st.snap, at)
		if got := describeInventory(r, ok); got != st.want {
			t.Fatalf("step %d (%s): inventory %q, want %q", i, st.name, got, st.want)
		}
		if !ok {
			continue
		}
		if err := ledger.CheckRecord(&r); err != nil {
			t.Fatalf("step %d (%s): %v", i, st.name, err)
		}
		if r.WindowStart.UnixMilli() != at || !r.WindowEnd.Equal(r.WindowStart) || r.ID != r.ComputeID() ||
			r.Node != "n1" || r.Provider != "p1" || r.Inventory.WindowMillis != 60_000 ||
			r.Inventory.MergeWindowMillis != 3_600_000 || r.Inventory.Agent != "v9" {
			t.Fatalf("step %d (%s): record %+v %+v", i, st.name, r, r.Inventory)
		}
	}
}

// describeInventory is "GPU-<last digit> [mig] [GI ids]" per GPU.
func describeInventory(r protocol.Record, ok bool) string {
	if !ok {
		return ""
	}
	var parts []string
	for _, g := range r.Inventory.GPUs {
		s := "GPU-" + g.UUID[len(g.UUID)-1:]
		if g.MIGEnabled {
			s += " mig"
		}
		gis := []int{}
		for _, in := range g.Instances {
			gis = append(gis, in.GPUInstanceID)
		}
		parts = append(parts, fmt.Sprintf("%s %v", s, gis))
	}
	return strings.Join(parts, " | ")
}

// TestInventoryRefusedIsLoggedNotAppended: an inventory the authority
// would refuse (here a model name with a control character) is logged and
// left out: in the spool it would block every record appended with it.
func TestInventoryRefusedIsLoggedNotAppended(t *testing.T) {
	var buf bytes.Buffer
	iv := inventory{opts: InventoryOptions{Node: "n1", Provider: "p1", Window: time.Minute},
		log: slog.New(slog.NewTextHandler(&buf, nil))}
	snap := invNode(1)
	snap.Devices[0].Model = "H100\x00"
	if r, ok := iv.observe(snap, 1); ok {
		t.Fatalf("record %+v made of an invalid inventory", r)
	}
	if !strings.Contains(buf.String(), "inventory not reported") || !strings.Contains(buf.String(), "inventory model") {
		t.Errorf("log %q: want the refusal and its cause said", buf.String())
	}
	if _, ok := iv.observe(snap, 2); ok {
		t.Error("the same invalid inventory made a record the second time")
	}
}

// TestFullSpoolKeepsInventoryInPlace: while the spool is full the
// inventory is held in memory with the windows around it, and when room
// comes back it is stored in its place: after the windows closed before
// it, ahead of those closed after.
func TestFullSpoolKeepsInventoryInPlace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spool.db")
	full, err := spool.Open(spool.Options{Path: path, MaxBytes: 1, MergeWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d := &delivery{log: slog.New(slog.DiscardHandler), spool: full}
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	window := func(i int) []protocol.Record { return idleWindow(start, i) }
	iv := inventory{opts: InventoryOptions{Node: "n1", Provider: "p1", Window: time.Minute}}
	inv, ok := iv.observe(invNode(1), start.Add(2*time.Minute).UnixMilli())
	if !ok {
		t.Fatal("no inventory")
	}
	var want []protocol.Record
	for _, batch := range [][]protocol.Record{window(0), append(window(1), inv)} {
		_, isFull, err := d.store(ctx, batch, meter.Checkpoint{})
		if err != nil || !isFull {
			t.Fatalf("store into a full spool: full %v, err %v", isFull, err)
		}
		want = append(want, batch...)
	}
	if err := full.Close(); err != nil {
		t.Fatal(err)
	}
	roomy, err := spool.Open(spool.Options{Path: path, MergeWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer roomy.Close()
	d.spool = roomy
	if _, isFull, err := d.store(ctx, window(2), meter.Checkpoint{}); err != nil || isFull {
		t.Fatalf("store with room: full %v, err %v", isFull, err)
	}
	want = append(want, window(2)...)
	var got []protocol.Record
	seal := func(first uint64, prev string, recs []protocol.Record) (ledger.Sealed, error) {
		got = append(got, recs...)
		return ledger.Sealed{Envelope: []byte("{}"), Hash: strings.Repeat("0", 64), FirstSeq: first, LastSeq: first + uint64(len(recs)) - 1}, nil
	}
	for {
		_, ok, err := roomy.SealNext(ctx, seal, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored in this order:\n%+v\nwant the order metered:\n%+v", got, want)
	}
}

// idleWindow is the i-th one-minute window after start: one idle record
// of invGPU0 on node n1.
func idleWindow(start time.Time, i int) []protocol.Record {
	s := start.Add(time.Duration(i) * time.Minute)
	r := protocol.Record{Node: "n1", Provider: "p1", WindowStart: s, WindowEnd: s.Add(time.Minute), Kind: protocol.KindIdle,
		GPUUUID: invGPU0, ParentUUID: invGPU0, Model: "H100", SliceNum: 1, SliceDen: 1, GPUMillis: 60_000,
		UtilizationPercent: -1, EnergyMillijoules: -1}
	r.ID = r.ComputeID()
	return []protocol.Record{r}
}

// TestInventoryUnchangedPollAllocatesNothing: the inventory is rebuilt in
// reused memory at every poll, so an unchanged one costs no allocation,
// and the records made keep GPUs of their own: later polls, reusing that
// memory, never change a record already made (a spool that is full holds
// records in memory for a while).
func TestInventoryUnchangedPollAllocatesNothing(t *testing.T) {
	iv := inventory{opts: InventoryOptions{Node: "n1", Provider: "p1", Window: time.Minute}}
	at := int64(1_000_000)
	first, ok := iv.observe(invNode(1, 2), at)
	if !ok {
		t.Fatal("no record at the first observation")
	}
	if first.Inventory.GPUs[0].Instances != nil {
		t.Errorf("GPU without MIG: instances %#v, want nil as before", first.Inventory.GPUs[0].Instances)
	}
	same := invNode(2, 1)
	if n := testing.AllocsPerRun(100, func() {
		at++
		if _, ok := iv.observe(same, at); ok {
			t.Fatal("a record for an unchanged inventory")
		}
	}); n != 0 {
		t.Errorf("an unchanged poll allocates %v times, want 0", n)
	}
	for i, snap := range []device.Snapshot{invNode(5, 6, 7), invNode(3), invNode(1, 2)} {
		at++
		if _, ok := iv.observe(snap, at); !ok {
			t.Fatalf("change %d: no record", i)
		}
	}
	if got := describeInventory(first, true); got != "GPU-0 [] | GPU-1 mig [1 2]" || first.ID != first.ComputeID() {
		t.Errorf("the first record changed after later polls: %s (ID matches content: %v)", got, first.ID == first.ComputeID())
	}
}
