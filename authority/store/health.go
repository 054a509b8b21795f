package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// Health is what the authority's /metrics reads from the store at each
// scrape (authority/server): the review queue, and per node and GPU what
// was delivered and what is covered. Every read is an index seek (or a
// scan of the nodes and GPUs registered, and of the held reviews), in one
// snapshot per statement; nothing is locked.
type Health struct {
	// HeldFen is the subsidy held for review, summed.
	HeldFen billing.Fen
	// OldestHeld is when the oldest review still held was created; zero
	// when none is held.
	OldestHeld time.Time
	// Reviews counts reviews by status; every status is present.
	Reviews map[string]int64
	Nodes   []NodeHealth // by id
}

// NodeHealth is one registered node.
type NodeHealth struct {
	ID     string
	Forked bool
	// LastBatch is when its head batch was received; zero before its
	// first.
	LastBatch time.Time
	// Window is the metering window its latest inventory declared; 0
	// before it reported one.
	Window time.Duration
	// CoveredUntil is the latest window end of any of its GPUs; zero while
	// none has one.
	CoveredUntil time.Time
	GPUs         []GPUHealth // by UUID
}

// GPUHealth is one registered GPU: the end of its latest window (for the
// window that starts last: gpu_windows by its primary key), zero while it
// has none.
type GPUHealth struct {
	UUID         string
	CoveredUntil time.Time
}

// Health reads the store's Health.
func (s *Store) Health(ctx context.Context) (Health, error) {
	h := Health{Reviews: map[string]int64{}}
	var (
		held   int64
		oldest sql.NullInt64
	)
	if err := s.queryRow(ctx, `SELECT COALESCE(SUM(held_fen), 0), MIN(created) FROM reviews WHERE status = ?`,
		billing.ReviewHeld).Scan(&held, &oldest); err != nil {
		return Health{}, fmt.Errorf("read held subsidies: %w", err)
	}
	h.HeldFen = billing.Fen(held)
	if oldest.Valid {
		h.OldestHeld = msTime(oldest.Int64)
	}
	for _, st := range []string{billing.ReviewHeld, billing.ReviewApproved, billing.ReviewRejected} {
		var n int64
		if err := s.queryRow(ctx, `SELECT COUNT(*) FROM reviews WHERE status = ?`, st).Scan(&n); err != nil {
			return Health{}, fmt.Errorf("count %s reviews: %w", st, err)
		}
		h.Reviews[st] = n
	}
	rows, err := s.query(ctx, `SELECT n.id, n.forked,
			(SELECT b.received_at FROM batches b WHERE b.node_id = n.id AND b.last_seq = n.head_seq),
			(SELECT i.window_ms FROM node_inventories i WHERE i.node_id = n.id ORDER BY i.seq DESC LIMIT 1)
		FROM nodes n`)
	if err != nil {
		return Health{}, fmt.Errorf("read nodes' health: %w", err)
	}
	byID := map[string]*NodeHealth{}
	for rows.Next() {
		var (
			n        NodeHealth
			last, wi sql.NullInt64
		)
		if err := rows.Scan(&n.ID, &n.Forked, &last, &wi); err != nil {
			rows.Close()
			return Health{}, fmt.Errorf("read nodes' health: %w", err)
		}
		if last.Valid {
			n.LastBatch = msTime(last.Int64)
		}
		n.Window = time.Duration(wi.Int64) * time.Millisecond
		h.Nodes = append(h.Nodes, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Health{}, fmt.Errorf("read nodes' health: %w", err)
	}
	sort.Slice(h.Nodes, func(i, j int) bool { return h.Nodes[i].ID < h.Nodes[j].ID })
	for i := range h.Nodes {
		byID[h.Nodes[i].ID] = &h.Nodes[i]
	}
	rows, err = s.query(ctx, `SELECT g.gpu_uuid, g.node_id,
			(SELECT w.window_end_ms FROM gpu_windows w WHERE w.gpu_uuid = g.gpu_uuid
				ORDER BY w.window_start_ms DESC, w.window_end_ms DESC LIMIT 1)
		FROM node_gpus g`)
	if err != nil {
		return Health{}, fmt.Errorf("read GPUs' coverage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			g    GPUHealth
			node string
			end  sql.NullInt64
		)
		if err := rows.Scan(&g.UUID, &node, &end); err != nil {
			return Health{}, fmt.Errorf("read GPUs' coverage: %w", err)
		}
		if end.Valid {
			g.CoveredUntil = msTime(end.Int64)
		}
		n := byID[node]
		if n == nil {
			continue // registered after the nodes were read
		}
		n.GPUs = append(n.GPUs, g)
		if g.CoveredUntil.After(n.CoveredUntil) {
			n.CoveredUntil = g.CoveredUntil
		}
	}
	if err := rows.Err(); err != nil {
		return Health{}, fmt.Errorf("read GPUs' coverage: %w", err)
	}
	for i := range h.Nodes {
		gs := h.Nodes[i].GPUs
		sort.Slice(gs, func(a, b int) bool { return gs[a].UUID < gs[b].UUID })
	}
	return h, nil
}
