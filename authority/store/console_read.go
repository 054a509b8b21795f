package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// ConsoleScope limits the console's reads to one party's data: Provider
// set, that provider's; Entity set, that entity's; neither, everything
// (an operator). The console builds it in one place from the session.
type ConsoleScope struct {
	Provider, Entity string
}

// ProgramBudget is what a program committed (the face of its vouchers not
// revoked), what they still hold, what it paid and what waits in the
// review queue.
type ProgramBudget struct {
	Program   string      `json:"program"`
	Name      string      `json:"name"`
	Vouchers  int64       `json:"vouchers"`
	Committed billing.Fen `json:"committed_fen"`
	Balance   billing.Fen `json:"balance_fen"`
	Paid      billing.Fen `json:"paid_fen"`
	Held      billing.Fen `json:"held_fen"`
}

// ProgramBudgets sums each program's budget from the vouchers and the
// review queue, never the records: every grant is taken from a voucher's
// balance at ingest (a held one too) and given back on rejection, so what
// the vouchers spent (face minus balance, revoked ones included) is paid
// plus held, and held is the held reviews' sum.
func (s *Store) ProgramBudgets(ctx context.Context) ([]ProgramBudget, error) {
	rows, err := s.query(ctx, `SELECT p.id, p.name,
			COALESCE(SUM(CASE WHEN v.status <> ? THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN v.status <> ? THEN v.face_fen ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN v.status <> ? THEN v.balance_fen ELSE 0 END), 0),
			COALESCE(SUM(v.face_fen - v.balance_fen), 0)
		FROM programs p LEFT JOIN vouchers v ON v.program_id = p.id
		GROUP BY p.id, p.name ORDER BY p.id`, billing.VoucherRevoked, billing.VoucherRevoked, billing.VoucherRevoked)
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	var out []ProgramBudget
	at := map[string]int{}
	err = scanAll(rows, func() error {
		var b ProgramBudget
		if err := rows.Scan(&b.Program, &b.Name, &b.Vouchers, &b.Committed, &b.Balance, &b.Paid); err != nil {
			return err
		}
		at[b.Program] = len(out)
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	rows, err = s.query(ctx, `SELECT c.program_id, SUM(r.held_fen) FROM reviews r JOIN charges c ON c.record_id = r.record_id
		WHERE r.status = ? GROUP BY c.program_id`, billing.ReviewHeld)
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			id  string
			sum billing.Fen
		)
		if err := rows.Scan(&id, &sum); err != nil {
			return err
		}
		if i, ok := at[id]; ok {
			out[i].Held = sum
			out[i].Paid -= sum
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	return out, nil
}

// UsageDay is the GPU time of one day (China Standard Time), provider and
// model.
type UsageDay struct {
	Day      time.Time `json:"day"` // midnight, China Standard Time
	Provider string    `json:"provider"`
	Model    string    `json:"model"`
	GPUMs    int64     `json:"gpu_ms"`
}

const (
	dayMs = 24 * 60 * 60 * 1000
	cstMs = 8 * 60 * 60 * 1000
)

// RollupMargin is how long after a batch's receipt the rollup folds it:
// longer than any ingest transaction may take to commit, so that no batch
// commits with a receipt time the rollup has passed. Batches received
// since are summed from the records on each read.
const RollupMargin = 10 * time.Minute

// usageFold sums usage records per day, provider, model and entity, of
// the batches received in (lo, hi]. The batches drive the join (SQLite
// takes CROSS JOIN's order as written): a few batches, through their index
// on received_at, never a scan of the records.
const usageFold = `SELECT (r.window_start_ms + 28800000) / 86400000 AS day, r.provider AS provider, r.model AS model,
		COALESCE(c.entity_id, '') AS entity_id, SUM(r.gpu_ms) AS gpu_ms
	FROM batches b CROSS JOIN records r
	LEFT JOIN charges c ON c.record_id = r.record_id
	WHERE b.received_at > ? AND b.received_at <= ? AND r.node_id = b.node_id AND r.batch_first_seq = b.first_seq
		AND r.kind = 'usage'
	GROUP BY 1, r.provider, r.model, COALESCE(c.entity_id, '')`

// foldUsage adds the batches received up to now - RollupMargin to the
// rollup, in one transaction that locks its watermark.
func (s *Store) foldUsage(ctx context.Context, now time.Time) error {
	hi := now.Add(-RollupMargin).UnixMilli()
	var lo int64
	if err := s.queryRow(ctx, `SELECT folded_ms FROM console_rollup WHERE id = 1`).Scan(&lo); err != nil {
		return err
	}
	if lo >= hi {
		return nil
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.queryRowTx(ctx, tx, `SELECT folded_ms FROM console_rollup WHERE id = 1`+s.d.forUpdate).Scan(&lo); err != nil {
			return err
		}
		if lo >= hi {
			return nil // another request folded meanwhile
		}
		_, err := s.exec(ctx, tx, `INSERT INTO console_usage_days (day, provider, model, entity_id, gpu_ms) `+usageFold+`
			ON CONFLICT (day, provider, model, entity_id) DO UPDATE SET gpu_ms = console_usage_days.gpu_ms + excluded.gpu_ms`, lo, hi)
		if err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE console_rollup SET folded_ms = ? WHERE id = 1`, hi)
		return err
	})
}

// UsageByDay sums usage GPU time per day (China Standard Time), provider
// and model, over the whole days that [from, to) touches, within scope:
// from the rollup, plus the batches received since it was folded.
func (s *Store) UsageByDay(ctx context.Context, sc ConsoleScope, from, to time.Time) ([]UsageDay, error) {
	if err := s.foldUsage(ctx, time.Now()); err != nil {
		return nil, fmt.Errorf("usage by day: fold: %w", err)
	}
	d0, d1 := (from.UnixMilli()+cstMs)/dayMs, (to.UnixMilli()+cstMs+dayMs-1)/dayMs
	// One snapshot: the rollup and its watermark agree.
	opts := &sql.TxOptions{ReadOnly: true}
	if s.d.name == DriverPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.r.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("usage by day: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var folded int64
	if err := tx.QueryRowContext(ctx, `SELECT folded_ms FROM console_rollup WHERE id = 1`).Scan(&folded); err != nil {
		return nil, fmt.Errorf("usage by day: %w", err)
	}
	type key struct {
		day             int64
		provider, model string
	}
	sums := map[key]int64{}
	add := func(q string, args ...any) error {
		rows, err := tx.QueryContext(ctx, s.d.rebind(q), args...)
		if err != nil {
			return err
		}
		return scanAll(rows, func() error {
			var (
				k      key
				entity string
				ms     int64
			)
			if err := rows.Scan(&k.day, &k.provider, &k.model, &entity, &ms); err != nil {
				return err
			}
			if k.day >= d0 && k.day < d1 && (sc.Provider == "" || sc.Provider == k.provider) && (sc.Entity == "" || sc.Entity == entity) {
				sums[k] += ms
			}
			return nil
		})
	}
	if err := add(`SELECT day, provider, model, entity_id, gpu_ms FROM console_usage_days WHERE day >= ? AND day < ?`, d0, d1); err != nil {
		return nil, fmt.Errorf("usage by day: %w", err)
	}
	if err := add(usageFold, folded, int64(math.MaxInt64)); err != nil {
		return nil, fmt.Errorf("usage by day: %w", err)
	}
	out := make([]UsageDay, 0, len(sums))
	for k, ms := range sums {
		out = append(out, UsageDay{Day: time.UnixMilli(k.day*dayMs - cstMs).UTC(), Provider: k.provider, Model: k.model, GPUMs: ms})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Day.Equal(b.Day) {
			return a.Day.Before(b.Day)
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		return a.Model < b.Model
	})
	return out, nil
}

// VoucherGrant is one payment a voucher made toward a record.
type VoucherGrant struct {
	RecordID    string      `json:"record_id"`
	Provider    string      `json:"provider"`
	Tenant      string      `json:"tenant"`
	WindowStart time.Time   `json:"window_start"`
	Amount      billing.Fen `json:"amount_fen"`
	Review      string      `json:"review"`
}

// VoucherGrants lists what voucher paid, newest first, at most limit.
func (s *Store) VoucherGrants(ctx context.Context, voucher string, limit int) ([]VoucherGrant, error) {
	rows, err := s.query(ctx, `SELECT g.record_id, c.provider, c.tenant, c.window_start_ms, g.amount_fen, c.review
		FROM grants g JOIN charges c ON c.record_id = g.record_id
		WHERE g.voucher_id = ? ORDER BY c.window_start_ms DESC, g.record_id LIMIT ?`, voucher, limit)
	if err != nil {
		return nil, fmt.Errorf("voucher %q grants: %w", voucher, err)
	}
	out := []VoucherGrant{}
	err = scanAll(rows, func() error {
		var (
			g  VoucherGrant
			ws int64
		)
		if err := rows.Scan(&g.RecordID, &g.Provider, &g.Tenant, &ws, &g.Amount, &g.Review); err != nil {
			return err
		}
		g.WindowStart = msTime(ws)
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("voucher %q grants: %w", voucher, err)
	}
	return out, nil
}
