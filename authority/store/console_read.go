package store

import (
	"context"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// ConsoleScope limits the console's reads to one party's data: Provider
// set, that provider's; Entity set, that entity's; neither, everything
// (an operator). The console builds it in one place from the session.
type ConsoleScope struct {
	Provider, Entity string
}

// ProgramBudget is what a program committed (the face of its vouchers not
// revoked), what they still hold, what it paid (subsidies not held) and
// what waits in the review queue.
type ProgramBudget struct {
	Program   string      `json:"program"`
	Name      string      `json:"name"`
	Vouchers  int64       `json:"vouchers"`
	Committed billing.Fen `json:"committed_fen"`
	Balance   billing.Fen `json:"balance_fen"`
	Paid      billing.Fen `json:"paid_fen"`
	Held      billing.Fen `json:"held_fen"`
}

// ProgramBudgets sums each program's budget with three aggregate queries,
// whatever the number of records.
func (s *Store) ProgramBudgets(ctx context.Context) ([]ProgramBudget, error) {
	rows, err := s.query(ctx, `SELECT p.id, p.name,
			COUNT(v.id), COALESCE(SUM(v.face_fen), 0), COALESCE(SUM(v.balance_fen), 0)
		FROM programs p LEFT JOIN vouchers v ON v.program_id = p.id AND v.status <> ?
		GROUP BY p.id, p.name ORDER BY p.id`, billing.VoucherRevoked)
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	var out []ProgramBudget
	at := map[string]int{}
	err = scanAll(rows, func() error {
		var b ProgramBudget
		if err := rows.Scan(&b.Program, &b.Name, &b.Vouchers, &b.Committed, &b.Balance); err != nil {
			return err
		}
		at[b.Program] = len(out)
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	rows, err = s.query(ctx, `SELECT program_id, review, SUM(subsidy_fen) FROM charges
		WHERE program_id <> '' GROUP BY program_id, review`)
	if err != nil {
		return nil, fmt.Errorf("program budgets: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			id, review string
			sum        billing.Fen
		)
		if err := rows.Scan(&id, &review, &sum); err != nil {
			return err
		}
		if i, ok := at[id]; ok {
			if review == billing.ReviewHeld {
				out[i].Held += sum
			} else {
				out[i].Paid += sum
			}
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

// UsageByDay sums usage records' GPU time whose window starts in
// [from, to) per day, provider and model, in SQL, within scope.
func (s *Store) UsageByDay(ctx context.Context, sc ConsoleScope, from, to time.Time) ([]UsageDay, error) {
	q := `SELECT (r.window_start_ms + ?) / ?, r.provider, r.model, SUM(r.gpu_ms) FROM records r`
	args := []any{int64(cstMs), int64(dayMs)}
	if sc.Entity != "" {
		q += ` JOIN charges c ON c.record_id = r.record_id AND c.entity_id = ?`
		args = append(args, sc.Entity)
	}
	q += ` WHERE r.kind = ? AND r.window_start_ms >= ? AND r.window_start_ms < ?`
	args = append(args, string(protocol.KindUsage), from.UnixMilli(), to.UnixMilli())
	if sc.Provider != "" {
		q += ` AND r.provider = ?`
		args = append(args, sc.Provider)
	}
	rows, err := s.query(ctx, q+` GROUP BY 1, r.provider, r.model ORDER BY 1, r.provider, r.model`, args...)
	if err != nil {
		return nil, fmt.Errorf("usage by day: %w", err)
	}
	out := []UsageDay{}
	err = scanAll(rows, func() error {
		var (
			d int64
			u UsageDay
		)
		if err := rows.Scan(&d, &u.Provider, &u.Model, &u.GPUMs); err != nil {
			return err
		}
		u.Day = time.UnixMilli(d*dayMs - cstMs).UTC()
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage by day: %w", err)
	}
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
