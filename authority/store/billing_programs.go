package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

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
		valid_from_ms, valid_to_ms, rounding, settlement FROM programs`+where), args...)
	if err != nil {
		return nil, fmt.Errorf("read programs: %w", err)
	}
	by := map[string]*billing.Program{}
	for rows.Next() {
		var (
			p                   billing.Program
			ratio, cy, cl, f, t int64
		)
		if err := rows.Scan(&p.ID, &p.Issuer, &p.Name, &ratio, &cy, &cl, &f, &t, &p.Rounding, &p.Settlement); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read programs: %w", err)
		}
		p.Ratio, p.CapPerYear, p.CapLifetime = billing.BasisPoints(ratio), billing.Fen(cy), billing.Fen(cl)
		p.ValidFrom, p.ValidTo = msTime(f), msTime(t)
		by[p.ID] = &p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read programs: %w", err)
	}
	if ids != nil {
		where = " WHERE program_id IN " + inList(len(ids))
	}
	// Each list: (program id, value[, ratio]) rows added to the program.
	lists := []struct {
		query string
		add   func(p *billing.Program, v string, ratio int64)
	}{
		{`SELECT program_id, model, ratio_bp FROM program_ratios`, func(p *billing.Program, v string, r int64) {
			if p.ModelRatios == nil {
				p.ModelRatios = map[string]billing.BasisPoints{}
			}
			p.ModelRatios[v] = billing.BasisPoints(r)
		}},
		{`SELECT program_id, provider, 0 FROM program_providers`, func(p *billing.Program, v string, _ int64) { p.Providers = append(p.Providers, v) }},
		{`SELECT program_id, model, 0 FROM program_models`, func(p *billing.Program, v string, _ int64) { p.Models = append(p.Models, v) }},
	}
	for _, l := range lists {
		rows, err := q.QueryContext(ctx, s.d.rebind(l.query+where), args...)
		if err != nil {
			return nil, fmt.Errorf("read programs: %w", err)
		}
		for rows.Next() {
			var (
				id, v string
				r     int64
			)
			if err := rows.Scan(&id, &v, &r); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read programs: %w", err)
			}
			// A program created after the first statement has no row
			// there: skip it (a listing may miss what is being added).
			if p := by[id]; p != nil {
				l.add(p, v, r)
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
