package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// queryer is a pool or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// inList is "(?, ?, ...)" with n placeholders.
func inList(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// readPrograms reads the programs whose id is in ids (all of them if ids
// is nil), sorted by id. Programs are immutable, so reading the program
// rows and their lists in separate statements is consistent.
func (s *Store) readPrograms(ctx context.Context, q queryer, ids []string) ([]billing.Program, error) {
	if ids != nil && len(ids) == 0 {
		return nil, nil
	}
	where, args := "", []any(nil)
	if ids != nil {
		where, args = " WHERE id IN "+inList(len(ids)), anys(ids)
	}
	rows, err := q.QueryContext(ctx, s.d.rebind(`SELECT id, issuer, name, ratio_bp, cap_year_fen, cap_lifetime_fen,
		valid_from_ms, valid_to_ms, rounding, settlement, voucher_term_months, voucher_term_from, voucher_min_fen,
		voucher_max_fen, budget_year_fen FROM programs`+where), args...)
	if err != nil {
		return nil, fmt.Errorf("read programs: %w", err)
	}
	by := map[string]*billing.Program{}
	for rows.Next() {
		var (
			p                                    billing.Program
			ratio, cy, cl, f, t, vmin, vmax, bud int64
		)
		if err := rows.Scan(&p.ID, &p.Issuer, &p.Name, &ratio, &cy, &cl, &f, &t, &p.Rounding, &p.Settlement,
			&p.VoucherTermMonths, &p.TermFrom, &vmin, &vmax, &bud); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read programs: %w", err)
		}
		p.Ratio, p.CapPerYear, p.CapLifetime = billing.BasisPoints(ratio), billing.Fen(cy), billing.Fen(cl)
		p.ValidFrom, p.ValidTo = msTime(f), msTime(t)
		p.VoucherMin, p.VoucherMax, p.BudgetPerYear = billing.Fen(vmin), billing.Fen(vmax), billing.Fen(bud)
		by[p.ID] = &p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read programs: %w", err)
	}
	if ids != nil {
		where = " WHERE program_id IN " + inList(len(ids))
	}
	// Each list: (program id, value, three numbers) rows added to the
	// program.
	lists := []struct {
		query string
		add   func(p *billing.Program, v string, n [3]int64)
	}{
		{`SELECT program_id, model, ratio_bp, 0, 0 FROM program_ratios`, func(p *billing.Program, v string, n [3]int64) {
			if p.ModelRatios == nil {
				p.ModelRatios = map[string]billing.BasisPoints{}
			}
			p.ModelRatios[v] = billing.BasisPoints(n[0])
		}},
		{`SELECT program_id, provider, approved_from_ms, approved_to_ms, 0 FROM program_providers`, func(p *billing.Program, v string, n [3]int64) {
			p.Providers = append(p.Providers, v)
			if n[0] != 0 || n[1] != 0 {
				if p.Approvals == nil {
					p.Approvals = map[string]billing.Approval{}
				}
				p.Approvals[v] = billing.Approval{From: optTime(n[0]), To: optTime(n[1])}
			}
		}},
		{`SELECT program_id, model, 0, 0, 0 FROM program_models`, func(p *billing.Program, v string, _ [3]int64) { p.Models = append(p.Models, v) }},
		{`SELECT program_id, category, ratio_bp, cap_year_fen, 0 FROM program_categories`, func(p *billing.Program, v string, n [3]int64) {
			if p.CategoryTerms == nil {
				p.CategoryTerms = map[string]billing.CategoryTerm{}
			}
			p.CategoryTerms[v] = billing.CategoryTerm{Ratio: billing.BasisPoints(n[0]), CapPerYear: billing.Fen(n[1])}
		}},
	}
	for _, l := range lists {
		rows, err := q.QueryContext(ctx, s.d.rebind(l.query+where), args...)
		if err != nil {
			return nil, fmt.Errorf("read programs: %w", err)
		}
		for rows.Next() {
			var (
				id, v string
				n     [3]int64
			)
			if err := rows.Scan(&id, &v, &n[0], &n[1], &n[2]); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read programs: %w", err)
			}
			// A program created after the first statement has no row
			// there: skip it (a listing may miss what is being added).
			if p := by[id]; p != nil {
				l.add(p, v, n)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read programs: %w", err)
		}
	}
	out := make([]billing.Program, 0, len(by))
	for _, p := range by {
		sort.Strings(p.Providers)
		sort.Strings(p.Models)
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// optTime is a stored optional time: 0 is none (the zero time).
func optTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return msTime(ms)
}

// optMs is the stored form of an optional time.
func optMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// programTermRows inserts p's provider approvals and category terms (the
// program row and its plain lists are AddProgram's).
func (s *Store) programTermRows(ctx context.Context, tx *sql.Tx, p billing.Program) error {
	for _, pr := range p.Providers {
		a := p.Approvals[pr]
		if _, err := s.exec(ctx, tx, `INSERT INTO program_providers (program_id, provider, approved_from_ms, approved_to_ms) VALUES (?, ?, ?, ?)`,
			p.ID, pr, optMs(a.From), optMs(a.To)); err != nil {
			return fmt.Errorf("provider %q: %w", pr, err)
		}
	}
	for c, t := range p.CategoryTerms {
		if _, err := s.exec(ctx, tx, `INSERT INTO program_categories (program_id, category, ratio_bp, cap_year_fen) VALUES (?, ?, ?, ?)`,
			p.ID, c, int64(t.Ratio), int64(t.CapPerYear)); err != nil {
			return fmt.Errorf("category %q: %w", c, err)
		}
	}
	return nil
}

// returnBudget takes amount off program's budget counter for year (a
// rejected subsidy's grants went back to the vouchers): the budget has
// room again. A program without a budget has no counter. It locks the
// counter after the entity's subsidy carry, the order of billing.go.
func (s *Store) returnBudget(ctx context.Context, tx *sql.Tx, program string, year int, amount int64) error {
	res, err := s.exec(ctx, tx, `UPDATE program_budgets SET granted_fen = granted_fen - ? WHERE program_id = ? AND year = ?`,
		amount, program, year)
	if err != nil {
		return fmt.Errorf("return %d fen to the %d budget of program %q: %w", amount, year, program, err)
	}
	_, err = res.RowsAffected()
	return err
}

// ProgramBudget is what a program granted all entities in each calendar
// year it has a budget counter for (docs/billing.md, budgets): by year.
func (s *Store) ProgramBudget(ctx context.Context, id string) (map[int]billing.Fen, error) {
	rows, err := s.query(ctx, `SELECT year, granted_fen FROM program_budgets WHERE program_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("read the budget of program %q: %w", id, err)
	}
	defer rows.Close()
	out := map[int]billing.Fen{}
	for rows.Next() {
		var y, g int64
		if err := rows.Scan(&y, &g); err != nil {
			return nil, fmt.Errorf("read the budget of program %q: %w", id, err)
		}
		out[int(y)] = billing.Fen(g)
	}
	return out, rows.Err()
}
