package store

import (
	"context"
	"database/sql"
	"maps"
	"testing"
	"time"
)

// reportUnregistered stores what an inventory of node (seq, observed at)
// said about gpu, not registered to node: what the ingest of its batch
// writes.
func reportUnregistered(t *testing.T, s *Store, node string, seq uint64, at time.Time, gpu, model string, l Layout) {
	t.Helper()
	ctx := context.Background()
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		f := &Facts{Node: node}
		f.AddUnregistered(seq, at.UnixMilli(), gpu, model, l)
		return s.saveReported(ctx, tx, f)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// layoutsOf reads gpu's whole layout history.
func layoutsOf(t *testing.T, s *Store, gpu string) []Layout {
	t.Helper()
	ctx := context.Background()
	f := &Facts{layouts: map[string][]Layout{}}
	if err := s.writeTx(ctx, func(tx *sql.Tx) error { return s.loadLayouts(ctx, tx, f, []string{gpu}, 0) }); err != nil {
		t.Fatal(err)
	}
	return f.layouts[gpu]
}

func reportedCount(t *testing.T, s *Store, node string) int {
	t.Helper()
	var n int
	if err := s.queryRow(context.Background(), `SELECT COUNT(*) FROM reported_layouts WHERE node_id = ?`, node).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLateGPUTakesItsNodesReportedLayouts: the layouts a node's
// inventories reported for a GPU not yet registered become the GPU's when
// it is registered to that node (the inventory is never sent again), and
// only that node's: another node's reports of the same UUID never count.
func TestLateGPUTakesItsNodesReportedLayouts(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		const (
			gA, gB  = "GPU-00000000-0000-4000-8000-00000000000a", "GPU-00000000-0000-4000-8000-00000000000b"
			late    = "GPU-00000000-0000-4000-8000-0000000000ff"
			other   = "GPU-00000000-0000-4000-8000-0000000000ee"
			model   = "H100-SXM5-80GB"
			inst1   = "MIG-00000000-0000-4000-8000-000000000001"
			inst2   = "MIG-00000000-0000-4000-8000-000000000002"
			profile = "3g.40gb"
		)
		for _, n := range []struct{ id, gpu string }{{"node-a", gA}, {"node-b", gB}} {
			if err := s.RegisterNode(ctx, Registration{ID: n.id, Provider: "p", Key: pubKey(t), GPUs: GPUsOf(model, n.gpu)}, t0); err != nil {
				t.Fatal(err)
			}
		}
		whole := Layout{Instances: map[string]string{}}
		mig := Layout{MIG: true, Instances: map[string]string{inst1: profile, inst2: profile}}
		// node-a: whole GPU, the same again (not a change), then MIG.
		reportUnregistered(t, s, "node-a", 1, t0.Add(time.Minute), late, model, whole)
		reportUnregistered(t, s, "node-a", 5, t0.Add(2*time.Minute), late, model, whole)
		reportUnregistered(t, s, "node-a", 9, t0.Add(3*time.Minute), late, model, mig)
		// An older report than the latest kept is not a change either.
		reportUnregistered(t, s, "node-a", 10, t0.Add(90*time.Second), late, model, whole)
		// node-b says otherwise about the same UUID, and about another GPU
		// with another model.
		reportUnregistered(t, s, "node-b", 1, t0.Add(time.Minute), late, model, mig)
		reportUnregistered(t, s, "node-b", 1, t0.Add(time.Minute), other, "A100-SXM4-80GB", whole)
		if got := reportedCount(t, s, "node-a"); got != 2 {
			t.Fatalf("node-a: %d reported layouts kept, want 2 (the same layout again and an older one are no change)", got)
		}
		if got := layoutsOf(t, s, late); len(got) != 0 {
			t.Fatalf("unregistered GPU has layouts %+v before it is registered", got)
		}

		if err := s.AddGPUs(ctx, "node-a", []GPU{{UUID: late, Model: model, Registered: t0}}, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got := layoutsOf(t, s, late)
		if len(got) != 2 || got[0].From != t0.Add(time.Minute).UnixMilli() || got[0].MIG || len(got[0].Instances) != 0 ||
			got[1].From != t0.Add(3*time.Minute).UnixMilli() || !got[1].MIG || !maps.Equal(got[1].Instances, mig.Instances) {
			t.Fatalf("layouts of %s after add-gpu to node-a: %+v, want node-a's whole GPU from +1m and its MIG layout from +3m", late, got)
		}
		var owner string
		if err := s.queryRow(ctx, `SELECT DISTINCT node_id FROM gpu_layouts WHERE gpu_uuid = ?`, late).Scan(&owner); err != nil || owner != "node-a" {
			t.Fatalf("layouts of %s stored for node %q (%v), want node-a", late, owner, err)
		}
		if n := reportedCount(t, s, "node-a"); n != 0 {
			t.Errorf("node-a: %d reported layouts left after they were adopted", n)
		}
		if n := reportedCount(t, s, "node-b"); n != 2 {
			t.Errorf("node-b: %d reported layouts left, want its 2 untouched", n)
		}

		// A GPU registered with a model other than the one the node
		// reported takes none of those reports.
		if err := s.AddGPUs(ctx, "node-b", GPUsOf(model, other), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := layoutsOf(t, s, other); len(got) != 0 {
			t.Errorf("%s registered as %s took layouts reported for another model: %+v", other, model, got)
		}
	})
}

// TestMovedGPUKeepsOldHistoryAndTakesNewNodesLaterLayouts: a GPU
// registered to another node before keeps that node's layout history; the
// new node's reports are added only after its latest layout.
func TestMovedGPUKeepsOldHistoryAndTakesNewNodesLaterLayouts(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		const (
			g1, g2, moved = "GPU-00000000-0000-4000-8000-000000000001", "GPU-00000000-0000-4000-8000-000000000002", "GPU-00000000-0000-4000-8000-000000000003"
			model         = "H100-SXM5-80GB"
		)
		if err := s.RegisterNode(ctx, Registration{ID: "old", Provider: "p", Key: pubKey(t), GPUs: GPUsOf(model, g1, moved)}, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterNode(ctx, Registration{ID: "new", Provider: "p", Key: pubKey(t), GPUs: GPUsOf(model, g2)}, t0); err != nil {
			t.Fatal(err)
		}
		whole := Layout{Instances: map[string]string{}}
		if err := s.SeedInventory(ctx, "old", t0.Add(time.Minute), time.Minute, 0, map[string]Layout{g1: whole, moved: whole}); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveGPU(ctx, "old", moved, t0.Add(10*time.Minute), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		mig := Layout{MIG: true, Instances: map[string]string{"MIG-00000000-0000-4000-8000-000000000009": "7g.80gb"}}
		// Reported by "new" before "old" last reported it: too old to add.
		reportUnregistered(t, s, "new", 1, t0.Add(30*time.Second), moved, model, whole)
		reportUnregistered(t, s, "new", 2, t0.Add(20*time.Minute), moved, model, mig)
		if err := s.AddGPUs(ctx, "new", []GPU{{UUID: moved, Model: model, Registered: t0.Add(10 * time.Minute)}}, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got := layoutsOf(t, s, moved)
		if len(got) != 2 || got[0].From != t0.Add(time.Minute).UnixMilli() || got[1].From != t0.Add(20*time.Minute).UnixMilli() || !got[1].MIG {
			t.Fatalf("layouts of the moved GPU: %+v, want old's from +1m then new's MIG layout from +20m", got)
		}
	})
}
