package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// The wall-time rule's windows (package doc): one row of unit_windows per
// (unit, distinct record interval) with the sum of its records' gpu_ms.
// A batch's windows are read, checked and written a unit and a chunk at a
// time, not a statement per interval: on PostgreSQL every statement is a
// round trip.

// interval is one unit's record window.
type interval struct {
	unit       string
	start, end int64 // Unix ms
}

// window is a stored or new interval of one unit with its total.
type window struct {
	start, end int64
	total      int64
	stored     bool  // in unit_windows before this batch
	new        bool  // an interval of this batch
	added      int64 // this batch's gpu_ms in it
}

// windowChunk is how many windows one upsert writes (5 parameters each).
const windowChunk = 200

// addWindows checks the batch's per-interval sums against the stored
// windows of their units and writes the new totals. Two distinct intervals
// of a unit may not overlap, stored or new, and no total may exceed its
// interval's length; otherwise ErrOverWallTime and the caller rolls back.
func (s *Store) addWindows(ctx context.Context, tx *sql.Tx, node string, sums map[interval]int64, own map[string]bool) error {
	byUnit := map[string][]interval{}
	for iv := range sums {
		byUnit[iv.unit] = append(byUnit[iv.unit], iv)
	}
	units := make([]string, 0, len(byUnit))
	for u := range byUnit {
		units = append(units, u)
	}
	sort.Strings(units)
	if err := s.lockUnits(ctx, tx, units, own); err != nil {
		return err
	}
	spans := make([]unitSpan, len(units))
	for i, u := range units {
		ivs := byUnit[u]
		sort.Slice(ivs, func(i, j int) bool {
			if ivs[i].start != ivs[j].start {
				return ivs[i].start < ivs[j].start
			}
			return ivs[i].end < ivs[j].end
		})
		spans[i] = unitSpan{unit: u, from: ivs[0].start, to: maxEnd(ivs)}
	}
	stored, err := s.storedWindows(ctx, tx, spans)
	if err != nil {
		return err
	}
	var all []interval
	for _, u := range units {
		ivs := byUnit[u]
		if err := checkWindows(u, stored[u], ivs, sums); err != nil {
			return err
		}
		all = append(all, ivs...)
	}
	for len(all) > 0 {
		n := min(len(all), windowChunk)
		s.upsertWindows(tx, node, all[:n], sums)
		all = all[n:]
	}
	return nil
}

func maxEnd(ivs []interval) int64 {
	m := ivs[0].end
	for _, iv := range ivs[1:] {
		m = max(m, iv.end)
	}
	return m
}

// lockUnits serializes ingests that write windows of the same unit. A
// unit that is one of the node's registered GPUs is written by this node
// only (notForeign refuses it to any other), and the node's lock already
// orders those. Any other unit UUID (a MIG instance) could be named by two
// nodes, and the overlap check reads before it writes: on PostgreSQL two
// such ingests must not interleave. Keys are taken in ascending order
// (unitLockKeys), after the node lock, so the lock order is the same for
// every ingest.
func (s *Store) lockUnits(ctx context.Context, tx *sql.Tx, units []string, own map[string]bool) error {
	if s.d.lockUnit == "" {
		return nil
	}
	var shared []string
	for _, u := range units {
		if !own[u] {
			shared = append(shared, u)
		}
	}
	for _, k := range unitLockKeys(shared) {
		if _, err := s.exec(ctx, tx, s.d.lockUnit, pgUnitLockSpace, k); err != nil {
			return fmt.Errorf("lock unit windows: %w", err)
		}
	}
	return nil
}

// unitSpan is the range [from, to) of one unit's new windows.
type unitSpan struct {
	unit     string
	from, to int64
}

// unitSpanChunk bounds the units one read names: a SELECT per unit joined
// by UNION ALL, under SQLite's 500 compound terms.
const unitSpanChunk = 200

// storedWindows reads, per unit, the stored windows that can overlap its
// span [from, to): those starting in [from, to), and the last one starting
// before from. Stored windows of a unit are pairwise disjoint, so no
// earlier one reaches from. Both bounds are index ranges of the primary
// key: the read never scans a unit's history. All the units' windows come
// in one statement (a chunk of units each), not one per unit: on
// PostgreSQL each statement is a round trip.
func (s *Store) storedWindows(ctx context.Context, tx *sql.Tx, spans []unitSpan) (map[string][]window, error) {
	out := make(map[string][]window, len(spans))
	for len(spans) > 0 {
		n := min(len(spans), unitSpanChunk)
		if err := s.readUnitWindows(ctx, tx, spans[:n], out); err != nil {
			return nil, err
		}
		spans = spans[n:]
	}
	return out, nil
}

func (s *Store) readUnitWindows(ctx context.Context, tx *sql.Tx, spans []unitSpan, out map[string][]window) error {
	var q strings.Builder
	args := make([]any, 0, 5*len(spans))
	for i, sp := range spans {
		if i > 0 {
			q.WriteString(" UNION ALL ")
		}
		q.WriteString(`SELECT gpu_uuid, window_start_ms, window_end_ms, total_ms FROM unit_windows
		WHERE gpu_uuid = ? AND window_start_ms < ? AND window_start_ms >= COALESCE(
			(SELECT MAX(window_start_ms) FROM unit_windows WHERE gpu_uuid = ? AND window_start_ms < ?), ?)`)
		args = append(args, sp.unit, sp.to, sp.unit, sp.from, sp.from)
	}
	q.WriteString(` ORDER BY 1, 2`)
	what := fmt.Sprintf("read windows of units %s..%s", spans[0].unit, spans[len(spans)-1].unit)
	rows, err := tx.QueryContext(ctx, s.d.rebind(q.String()), args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		w := window{stored: true}
		if err := rows.Scan(&u, &w.start, &w.end, &w.total); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		out[u] = append(out[u], w)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// checkWindows applies the wall-time rule to one unit: stored are its
// stored windows near the batch's, ivs the batch's distinct intervals of
// the unit (sorted), sums their new gpu_ms.
func checkWindows(unit string, stored []window, ivs []interval, sums map[interval]int64) error {
	byKey := map[[2]int64]*window{}
	var ws []*window
	for i := range stored {
		w := &stored[i]
		byKey[[2]int64{w.start, w.end}] = w
		ws = append(ws, w)
	}
	for _, iv := range ivs {
		w := byKey[[2]int64{iv.start, iv.end}]
		if w == nil {
			w = &window{start: iv.start, end: iv.end}
			byKey[[2]int64{iv.start, iv.end}] = w
			ws = append(ws, w)
		}
		w.new, w.added = true, sums[iv]
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].start != ws[j].start {
			return ws[i].start < ws[j].start
		}
		return ws[i].end < ws[j].end
	})
	// Sorted by start, two of the intervals overlap if and only if two
	// neighbours do.
	for i := 1; i < len(ws); i++ {
		a, b := ws[i-1], ws[i]
		if b.start >= a.end {
			continue
		}
		if !a.new && b.new {
			a, b = b, a // a: an interval of this batch
		}
		where := "window of this batch"
		if b.stored {
			where = "stored window"
		}
		return fmt.Errorf("%w: unit %s window [%d, %d) overlaps %s [%d, %d)", ErrOverWallTime, unit, a.start, a.end, where, b.start, b.end)
	}
	for _, w := range ws {
		if w.new && w.total+w.added > w.end-w.start {
			return fmt.Errorf("%w: unit %s window [%d, %d): %d ms stored and new, window is %d ms",
				ErrOverWallTime, unit, w.start, w.end, w.total+w.added, w.end-w.start)
		}
	}
	return nil
}

// upsertWindows queues the statement that adds the sums of ivs to their
// rows, and checks the totals the database returns: the last line of
// defence for the rule, should anything have written a unit's windows
// since they were read.
func (s *Store) upsertWindows(tx *sql.Tx, node string, ivs []interval, sums map[interval]int64) {
	var q strings.Builder
	q.WriteString(`INSERT INTO unit_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_ms) VALUES `)
	args := make([]any, 0, 5*len(ivs))
	for i, iv := range ivs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, iv.unit, iv.start, iv.end, node, sums[iv])
	}
	q.WriteString(` ON CONFLICT (gpu_uuid, window_start_ms, window_end_ms) DO UPDATE SET total_ms = unit_windows.total_ms + excluded.total_ms
		RETURNING gpu_uuid, window_start_ms, window_end_ms, total_ms`)
	s.queueCheck(tx, "add to unit windows", func(rows resultRows) error {
		n := 0
		for rows.Next() {
			var (
				iv    interval
				total int64
			)
			if err := rows.Scan(&iv.unit, &iv.start, &iv.end, &total); err != nil {
				return fmt.Errorf("add to unit windows: %w", err)
			}
			if total > iv.end-iv.start {
				return fmt.Errorf("%w: unit %s window [%d, %d): %d ms stored and new, window is %d ms",
					ErrOverWallTime, iv.unit, iv.start, iv.end, total, iv.end-iv.start)
			}
			n++
		}
		if n != len(ivs) {
			return fmt.Errorf("add to unit windows: %d rows written, want %d", n, len(ivs))
		}
		return nil
	}, q.String(), args...)
}
