package store

import (
	"context"
	"database/sql"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

func TestHealth(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		h, err := s.Health(ctx)
		must(t, err)
		if h.HeldFen != 0 || !h.OldestHeld.IsZero() || len(h.Nodes) != 0 || !reflect.DeepEqual(h.Reviews, map[string]int64{"held": 0, "approved": 0, "rejected": 0}) {
			t.Errorf("empty store: %+v", h)
		}

		ids := reviewSetup(t, s) // node n1's first batch, received at t0
		hold(t, s, ids[0], "energy 0 mJ")
		hold(t, s, ids[1], "energy 0 mJ")
		hold(t, s, ids[2], "energy 0 mJ")
		_, err = s.RejectReview(ctx, ids[0], "alice", "no work", t0)
		must(t, err)
		newBillNode(t, s, "n0")
		// What ingest will write: n1's inventories (the latest declares a
		// 2-minute window), its GPUs' windows, and n0's fork flag.
		// Later than every window reviewSetup ingested.
		w := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
		must(t, s.writeTx(ctx, func(tx *sql.Tx) error {
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO node_inventories (node_id, seq, observed_ms, window_ms, merge_window_ms, record_id) VALUES (?, ?, ?, ?, ?, ?)`,
					[]any{"n1", 1, w.UnixMilli(), 60_000, 3_600_000, "r1"}},
				{`INSERT INTO node_inventories (node_id, seq, observed_ms, window_ms, merge_window_ms, record_id) VALUES (?, ?, ?, ?, ?, ?)`,
					[]any{"n1", 9, w.UnixMilli(), 120_000, 3_600_000, "r9"}},
				{`INSERT INTO gpu_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled) VALUES (?, ?, ?, ?, ?)`,
					[]any{billGPU("n1", 1), w.UnixMilli(), w.Add(2 * time.Minute).UnixMilli(), "n1", 1}},
				{`INSERT INTO gpu_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled) VALUES (?, ?, ?, ?, ?)`,
					[]any{billGPU("n1", 1), w.Add(2 * time.Minute).UnixMilli(), w.Add(3 * time.Minute).UnixMilli(), "n1", 1}},
				{`INSERT INTO gpu_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled) VALUES (?, ?, ?, ?, ?)`,
					[]any{billGPU("n1", 2), w.UnixMilli(), w.Add(2 * time.Minute).UnixMilli(), "n1", 1}},
				{`UPDATE nodes SET forked = ? WHERE id = ?`, []any{true, "n0"}},
			} {
				if _, err := s.exec(ctx, tx, q.sql, q.args...); err != nil {
					return err
				}
			}
			return nil
		}))

		h, err = s.Health(ctx)
		must(t, err)
		if !h.OldestHeld.Equal(t0) {
			t.Errorf("oldest held review created %s, want %s", h.OldestHeld, t0)
		}
		if h.HeldFen != 1000 || !reflect.DeepEqual(h.Reviews, map[string]int64{billing.ReviewHeld: 2, billing.ReviewApproved: 0, billing.ReviewRejected: 1}) {
			t.Errorf("review queue: held %d fen, %v", h.HeldFen, h.Reviews)
		}
		gpus := func(node string, until ...time.Time) []GPUHealth {
			var out []GPUHealth
			for i, u := range until {
				out = append(out, GPUHealth{UUID: billGPU(node, i+1), CoveredUntil: u})
			}
			return out
		}
		want := []NodeHealth{
			{ID: "n0", Forked: true, GPUs: gpus("n0", time.Time{}, time.Time{}, time.Time{}, time.Time{})},
			{ID: "n1", LastBatch: t0, Window: 2 * time.Minute, CoveredUntil: w.Add(3 * time.Minute),
				GPUs: gpus("n1", w.Add(3*time.Minute), w.Add(2*time.Minute), time.Time{}, time.Time{})},
		}
		if len(h.Nodes) != len(want) {
			t.Fatalf("nodes: %+v", h.Nodes)
		}
		for i := range want {
			g, w := h.Nodes[i], want[i]
			if g.ID != w.ID || g.Forked != w.Forked || !g.LastBatch.Equal(w.LastBatch) || g.Window != w.Window ||
				!g.CoveredUntil.Equal(w.CoveredUntil) || len(g.GPUs) != len(w.GPUs) {
				t.Errorf("node %d: %+v\nwant %+v", i, g, w)
				continue
			}
			for j := range w.GPUs {
				if g.GPUs[j].UUID != w.GPUs[j].UUID || !g.GPUs[j].CoveredUntil.Equal(w.GPUs[j].CoveredUntil) {
					t.Errorf("node %s GPU %d: %+v, want %+v", g.ID, j, g.GPUs[j], w.GPUs[j])
				}
			}
		}
	})
}
