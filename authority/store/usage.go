package store

import (
	"context"
	"fmt"
	"time"
)

// UsageFilter selects usage records: those whose whole window lies in
// [From, To), optionally of one tenant and/or node ("" = all).
type UsageFilter struct {
	Tenant, Node string
	From, To     time.Time
}

// UsageRow is the accepted usage of one tenant on one node in a period.
type UsageRow struct {
	Tenant  string `json:"tenant"`
	Node    string `json:"node"`
	GPUMs   int64  `json:"gpu_ms"`
	Records int64  `json:"records"`
}

// Usage sums accepted usage records (kind usage only: idle and gaps are
// never billable) per tenant and node, ordered by tenant then node. The
// CAST keeps the sum an integer on PostgreSQL, where SUM(BIGINT) is
// NUMERIC.
func (s *Store) Usage(ctx context.Context, f UsageFilter) ([]UsageRow, error) {
	q := `SELECT tenant, node_id, CAST(SUM(gpu_ms) AS BIGINT), COUNT(*) FROM records
		WHERE kind = 'usage' AND window_start_ms >= ? AND window_end_ms <= ?`
	args := []any{f.From.UnixMilli(), f.To.UnixMilli()}
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	if f.Node != "" {
		q += ` AND node_id = ?`
		args = append(args, f.Node)
	}
	q += ` GROUP BY tenant, node_id ORDER BY tenant, node_id`
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	defer rows.Close()
	out := []UsageRow{}
	for rows.Next() {
		var u UsageRow
		if err := rows.Scan(&u.Tenant, &u.Node, &u.GPUMs, &u.Records); err != nil {
			return nil, fmt.Errorf("query usage: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	return out, nil
}

// Counts is the number of rows per table, for tests and operators.
type Counts struct {
	Batches, Records, UnitWindows int64
}

// Count reads the row counts of the batch tables.
func (s *Store) Count(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.queryRow(ctx, `SELECT (SELECT COUNT(*) FROM batches), (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM unit_windows)`).
		Scan(&c.Batches, &c.Records, &c.UnitWindows)
	if err != nil {
		return Counts{}, fmt.Errorf("count rows: %w", err)
	}
	return c, nil
}
