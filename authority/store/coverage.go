package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/coverage"
)

// maxRecordMillis bounds a record's window: a record never crosses its
// node's merge window, and merge windows divide a day (agent config, and
// window-too-long at the authority), so no window is longer than 24 h.
// Coverage reads the windows starting from this much before the period,
// an index range of gpu_windows' primary key, instead of the GPU's whole
// history. Were a longer window ever stored, the part of it in the period
// would show as a hole: coverage can understate, never overstate.
const maxRecordMillis = 24 * 60 * 60 * 1000

// CoverageFilter selects the registered GPUs whose coverage of [From, To)
// is measured: those registered before To, of Provider, Node and GPU when
// given ("" = any), and, with Entity, only those that ran usage charged to
// the entity with a window starting in the period (a statement's GPUs).
// Now clips the period: time after it is not expected yet.
type CoverageFilter struct {
	Provider, Node, GPU, Entity string
	From, To, Now               time.Time
}

// GPUCoverage is one GPU's coverage of a period (authority/coverage).
type GPUCoverage = coverage.GPU

// Coverage measures, per selected GPU, how much of the time since its
// registration within [From, To) and before Now is covered by the union of
// the record intervals its node reported (gpu_windows: usage, idle and gap
// alike), and lists the holes. GPUs are ordered by provider, node and
// UUID.
func (s *Store) Coverage(ctx context.Context, f CoverageFilter) ([]GPUCoverage, error) {
	if f.From.IsZero() || f.To.IsZero() || !f.To.After(f.From) || f.Now.IsZero() {
		return nil, fmt.Errorf("coverage: [%s, %s) at %s: from, to and now are required, and to must be after from",
			f.From.UTC().Format(time.RFC3339), f.To.UTC().Format(time.RFC3339), f.Now.UTC().Format(time.RFC3339))
	}
	where, args := f.gpus()
	out, err := s.coverageGPUs(ctx, where, args)
	if err != nil {
		return nil, fmt.Errorf("coverage: %w", err)
	}
	tallies := make(map[string]*coverage.Tally, len(out))
	var lo, hi int64
	for i := range out {
		g := &out[i]
		l, h := coverage.Span(f.From, f.To, g.Registered, f.Now)
		tallies[g.GPU] = coverage.NewTally(l, h)
		if i == 0 || l < lo {
			lo = l
		}
		hi = max(hi, h)
	}
	if hi > lo {
		if err := s.coverageWindows(ctx, where, args, lo, hi, tallies); err != nil {
			return nil, fmt.Errorf("coverage: %w", err)
		}
	}
	for i := range out {
		tallies[out[i].GPU].Fill(&out[i])
	}
	// Ordered here rather than by ORDER BY: text collation differs
	// between the engines, and reports must read the same on both.
	slices.SortFunc(out, func(a, b GPUCoverage) int {
		return cmp.Or(strings.Compare(a.Provider, b.Provider), strings.Compare(a.Node, b.Node), strings.Compare(a.GPU, b.GPU))
	})
	return out, nil
}

// gpus is the filter as a condition on node_gpus g joined with nodes n.
func (f CoverageFilter) gpus() (string, []any) {
	conds := []string{"g.registered_ms < ?"}
	args := []any{f.To.UnixMilli()}
	add := func(cond string, v ...any) {
		conds = append(conds, cond)
		args = append(args, v...)
	}
	if f.Provider != "" {
		add("n.provider = ?", f.Provider)
	}
	if f.Node != "" {
		add("g.node_id = ?", f.Node)
	}
	if f.GPU != "" {
		add("g.gpu_uuid = ?", f.GPU)
	}
	if f.Entity != "" {
		// The physical GPUs (parent_uuid) of the entity's charged records,
		// chosen as a statement chooses its lines (charges_entity index).
		add(`g.gpu_uuid IN (SELECT r.parent_uuid FROM charges c JOIN records r ON r.record_id = c.record_id
			WHERE c.entity_id = ? AND c.window_start_ms >= ? AND c.window_start_ms < ?)`,
			f.Entity, f.From.UnixMilli(), f.To.UnixMilli())
	}
	return strings.Join(conds, " AND "), args
}

// coverageGPUs reads the GPUs where selects.
func (s *Store) coverageGPUs(ctx context.Context, where string, args []any) ([]GPUCoverage, error) {
	rows, err := s.query(ctx, `SELECT g.gpu_uuid, g.node_id, n.provider, g.registered_ms
		FROM node_gpus g JOIN nodes n ON n.id = g.node_id WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read GPUs: %w", err)
	}
	defer rows.Close()
	out := []GPUCoverage{}
	for rows.Next() {
		var (
			g   GPUCoverage
			reg int64
		)
		if err := rows.Scan(&g.GPU, &g.Node, &g.Provider, &reg); err != nil {
			return nil, fmt.Errorf("read GPUs: %w", err)
		}
		g.Registered = msTime(reg)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read GPUs: %w", err)
	}
	return out, nil
}

// coverageWindows feeds the tallies the windows of the GPUs where selects
// that can reach into [lo, hi): those starting in [lo - maxRecordMillis,
// hi), read per GPU in order of start, a range of the primary key
// (gpu_uuid, window_start_ms, window_end_ms) that the query reads without
// touching the table.
func (s *Store) coverageWindows(ctx context.Context, where string, args []any, lo, hi int64, tallies map[string]*coverage.Tally) error {
	rows, err := s.query(ctx, `SELECT w.gpu_uuid, w.window_start_ms, w.window_end_ms FROM gpu_windows w
		WHERE w.gpu_uuid IN (SELECT g.gpu_uuid FROM node_gpus g JOIN nodes n ON n.id = g.node_id WHERE `+where+`)
			AND w.window_start_ms >= ? AND w.window_start_ms < ?
		ORDER BY w.gpu_uuid, w.window_start_ms`, append(args, lo-maxRecordMillis, hi)...)
	if err != nil {
		return fmt.Errorf("read GPU windows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			gpu        string
			start, end int64
		)
		if err := rows.Scan(&gpu, &start, &end); err != nil {
			return fmt.Errorf("read GPU windows: %w", err)
		}
		// A GPU registered since the GPUs were read has no tally: it was
		// not in the answer's snapshot, so its windows are not either.
		if t := tallies[gpu]; t != nil {
			t.Add(start, end)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read GPU windows: %w", err)
	}
	return nil
}
