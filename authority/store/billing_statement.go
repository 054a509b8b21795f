package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// Statement is an entity's statement for [from, to): a line per usage
// record billed to it whose window starts in the period, their totals, and
// the coverage of the GPUs they ran on. Each line carries its review
// state; a held subsidy is in Held, apart from the paid Subsidy, and not
// in Payable (billing.Line).
func (s *Store) Statement(ctx context.Context, entityID string, from, to time.Time) (billing.Statement, error) {
	what := fmt.Sprintf("statement of entity %q", entityID)
	if why := billing.ValidID(entityID); why != "" {
		return billing.Statement{}, invalidBilling(what, &billing.FieldError{Object: "statement", ID: entityID, Field: "entity", Msg: why})
	}
	if err := checkPeriod(what, from, to); err != nil {
		return billing.Statement{}, err
	}
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM entities WHERE id = ?`, entityID).Scan(&n); err != nil {
		return billing.Statement{}, fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return billing.Statement{}, fmt.Errorf("%s: %w: no such entity", what, ErrBillingNotFound)
	}
	lines, cov, err := s.linesAndCoverage(ctx, `c.entity_id = ?`, entityID, CoverageFilter{Entity: entityID, From: from, To: to})
	if err != nil {
		return billing.Statement{}, fmt.Errorf("%s: %w", what, err)
	}
	return billing.Statement{Entity: entityID, From: from, To: to, Lines: lines, Totals: billing.Sum(lines), Coverage: cov}, nil
}

// Claim is a provider's claim for [from, to): a line per usage record of
// the provider whose window starts in the period, what it claims from
// each program through each voucher — paid subsidies only (a held one is
// claimable once approved) — and the coverage of its GPUs.
func (s *Store) Claim(ctx context.Context, provider string, from, to time.Time) (billing.Claim, error) {
	what := fmt.Sprintf("claim of provider %q", provider)
	if provider == "" {
		return billing.Claim{}, invalidBilling(what, &billing.FieldError{Object: "claim", Field: "provider", Msg: "required"})
	}
	if err := checkPeriod(what, from, to); err != nil {
		return billing.Claim{}, err
	}
	lines, cov, err := s.linesAndCoverage(ctx, `c.provider = ?`, provider, CoverageFilter{Provider: provider, From: from, To: to})
	if err != nil {
		return billing.Claim{}, fmt.Errorf("%s: %w", what, err)
	}
	return billing.Claim{Provider: provider, From: from, To: to, Lines: lines,
		ByVoucher: billing.SumByVoucher(lines), Totals: billing.Sum(lines), Coverage: cov}, nil
}

// linesAndCoverage reads the lines of [f.From, f.To) that cond (on arg)
// selects and the coverage f selects. Coverage of a period not over yet
// expects only the time until now.
func (s *Store) linesAndCoverage(ctx context.Context, cond, arg string, f CoverageFilter) ([]billing.Line, []GPUCoverage, error) {
	lines, err := s.lines(ctx, cond, arg, f.From, f.To)
	if err != nil {
		return nil, nil, err
	}
	f.Now = time.Now()
	cov, err := s.Coverage(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	return lines, cov, nil
}

func checkPeriod(what string, from, to time.Time) error {
	if from.IsZero() || to.IsZero() || !to.After(from) {
		return invalidBilling(what, &billing.FieldError{Object: "period", Field: "to",
			Msg: fmt.Sprintf("[%s, %s) is not a period: both are required and to must be after from",
				from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))})
	}
	return nil
}

// lines reads the charges matching cond (on charges c, one argument) with
// window start in [from, to), with their records, cards and grants, by
// window start, node and seq; grants soonest-expiring voucher first. One
// statement: one snapshot, so grants always belong to lines read.
func (s *Store) lines(ctx context.Context, cond, arg string, from, to time.Time) ([]billing.Line, error) {
	rows, err := s.query(ctx, `SELECT c.record_id, r.node_id, r.seq, c.provider, c.tenant, c.entity_id, r.gpu_uuid, r.model,
			r.mig_profile, r.window_start_ms, r.window_end_ms, r.gpu_ms, c.rate_card_id, COALESCE(rc.price_fen_per_hour, 0),
			c.cost_fen, c.subsidy_fen, c.program_id, c.note, c.review, c.limit_by, COALESCE(p.settlement, ''),
			g.voucher_id, g.amount_fen, v.expires_ms, v.program_id
		FROM charges c
		JOIN records r ON r.record_id = c.record_id
		LEFT JOIN rate_cards rc ON rc.id = c.rate_card_id
		LEFT JOIN programs p ON p.id = c.program_id
		LEFT JOIN grants g ON g.record_id = c.record_id
		LEFT JOIN vouchers v ON v.id = g.voucher_id
		WHERE `+cond+` AND c.window_start_ms >= ? AND c.window_start_ms < ?`,
		arg, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read charges: %w", err)
	}
	defer rows.Close()
	var out []*keyed
	by := map[string]*keyed{}
	for rows.Next() {
		var (
			l                billing.Line
			seq, ws, we      int64
			price, cost, sub int64
			voucher, vprog   sql.NullString
			amount, expires  sql.NullInt64
		)
		if err := rows.Scan(&l.RecordID, &l.Node, &seq, &l.Provider, &l.Tenant, &l.Entity, &l.GPUUUID, &l.Model,
			&l.MIGProfile, &ws, &we, &l.GPUMillis, &l.RateCard, &price, &cost, &sub, &l.Program, &l.Note, &l.Review,
			&l.Limit, &l.Settlement, &voucher, &amount, &expires, &vprog); err != nil {
			return nil, fmt.Errorf("read charges: %w", err)
		}
		k := by[l.RecordID]
		if k == nil {
			l.WindowStart, l.WindowEnd = msTime(ws), msTime(we)
			l.PricePerHour, l.Cost, l.Subsidy = billing.Fen(price), billing.Fen(cost), billing.Fen(sub)
			if !billing.Paid(l.Review) {
				// Held: taken from the vouchers, not claimable, not owed.
				// Rejected: already 0, its grants returned.
				l.Subsidy, l.Held = 0, billing.Fen(sub)
			}
			l.Payable = l.Cost - l.Subsidy - l.Held
			l.Settle()
			k = &keyed{line: l, seq: seq}
			by[l.RecordID] = k
			out = append(out, k)
		}
		if voucher.Valid {
			k.line.Grants = append(k.line.Grants, billing.Grant{Voucher: voucher.String, Program: vprog.String, Amount: billing.Fen(amount.Int64)})
			k.expires = append(k.expires, expires.Int64)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read charges: %w", err)
	}
	if len(out) == 0 {
		return []billing.Line{}, nil
	}
	// Ordered here rather than by ORDER BY: text collation differs
	// between the engines, and lines must read the same on both.
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case !a.line.WindowStart.Equal(b.line.WindowStart):
			return a.line.WindowStart.Before(b.line.WindowStart)
		case a.line.Node != b.line.Node:
			return a.line.Node < b.line.Node
		}
		return a.seq < b.seq
	})
	if err := s.linePieces(ctx, cond, arg, from, to, by); err != nil {
		return nil, err
	}
	lines := make([]billing.Line, len(out))
	for i, k := range out {
		sortGrants(k.line.Grants, k.expires)
		lines[i] = k.line
	}
	return lines, nil
}

// linePieces adds the pieces of the split charges among the lines read
// (by record id: the lines' in cond over [from, to)), in order.
func (s *Store) linePieces(ctx context.Context, cond, arg string, from, to time.Time, by map[string]*keyed) error {
	rows, err := s.query(ctx, `SELECT cp.record_id, cp.piece, cp.start_ms, cp.end_ms, cp.gpu_ms, cp.rate_card_id, cp.cost_fen,
			cp.subsidy_fen, cp.program_id, cp.note, cp.limit_by
		FROM charge_pieces cp JOIN charges c ON c.record_id = cp.record_id
		WHERE `+cond+` AND c.window_start_ms >= ? AND c.window_start_ms < ?`, arg, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return fmt.Errorf("read the pieces of split charges: %w", err)
	}
	defer rows.Close()
	type indexed struct {
		i int64
		p billing.Piece
	}
	pieces := map[string][]indexed{}
	for rows.Next() {
		var (
			id               string
			x                indexed
			st, en, cost, sb int64
		)
		if err := rows.Scan(&id, &x.i, &st, &en, &x.p.GPUMillis, &x.p.RateCard, &cost, &sb, &x.p.Program, &x.p.Note, &x.p.Limit); err != nil {
			return fmt.Errorf("read the pieces of split charges: %w", err)
		}
		x.p.Start, x.p.End, x.p.Cost, x.p.Subsidy = msTime(st), msTime(en), billing.Fen(cost), billing.Fen(sb)
		pieces[id] = append(pieces[id], x)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the pieces of split charges: %w", err)
	}
	for id, xs := range pieces {
		k := by[id]
		if k == nil {
			continue
		}
		sort.Slice(xs, func(i, j int) bool { return xs[i].i < xs[j].i })
		for _, x := range xs {
			k.line.Pieces = append(k.line.Pieces, x.p)
		}
	}
	return nil
}

// keyed is a line being read, with what orders it and its grants.
type keyed struct {
	line    billing.Line
	seq     int64
	expires []int64 // of each grant's voucher
}

// sortGrants orders a line's grants as they were drawn: the voucher
// expiring soonest first, then by id.
func sortGrants(gs []billing.Grant, expires []int64) {
	for i := 1; i < len(gs); i++ {
		for j := i; j > 0 && (expires[j] < expires[j-1] || expires[j] == expires[j-1] && gs[j].Voucher < gs[j-1].Voucher); j-- {
			gs[j], gs[j-1] = gs[j-1], gs[j]
			expires[j], expires[j-1] = expires[j-1], expires[j]
		}
	}
}
