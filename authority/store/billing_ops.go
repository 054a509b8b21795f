package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// The operator's billing operations (docs/billing.md). Every Add/Issue
// validates with authority/billing and returns an error wrapping
// ErrInvalidBilling (bad values; the message names the field, and the
// error also wraps billing's *FieldErrors) or ErrBillingConflict (an id
// that exists, an overlapping rate card, a missing program/entity) so
// callers can answer 400/409; ErrBillingNotFound names an object that
// does not exist for operations on it.

// invalidBilling wraps a validation failure.
func invalidBilling(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, ErrInvalidBilling, err)
}

// PutEntity creates or updates an entity (name, related providers).
func (s *Store) PutEntity(ctx context.Context, e billing.Entity) error {
	what := fmt.Sprintf("put entity %q", e.ID)
	if err := billing.ValidateEntity(e); err != nil {
		return invalidBilling(what, err)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		// The upsert locks the entity's row, as billing does before it
		// reads the related providers: a change waits for billing in
		// progress, and billing after it sees the new list.
		if _, err := s.exec(ctx, tx, `INSERT INTO entities (id, name, created) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name`, e.ID, e.Name, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM entity_related_providers WHERE entity_id = ?`, e.ID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, p := range e.RelatedProviders {
			if _, err := s.exec(ctx, tx, `INSERT INTO entity_related_providers (entity_id, provider) VALUES (?, ?)`, e.ID, p); err != nil {
				return fmt.Errorf("%s: related provider %q: %w", what, p, err)
			}
		}
		// Categories are replaced like the related providers: records
		// already billed keep the ratio they were billed at.
		if _, err := s.exec(ctx, tx, `DELETE FROM entity_categories WHERE entity_id = ?`, e.ID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, c := range e.Categories {
			if _, err := s.exec(ctx, tx, `INSERT INTO entity_categories (entity_id, category, valid_from_ms, valid_to_ms) VALUES (?, ?, ?, ?)`,
				e.ID, c.Name, c.From.UnixMilli(), optMs(c.To)); err != nil {
				return fmt.Errorf("%s: category %q: %w", what, c.Name, err)
			}
		}
		return nil
	})
}

// Entities lists entities by id.
func (s *Store) Entities(ctx context.Context) ([]billing.Entity, error) {
	rows, err := s.query(ctx, `SELECT e.id, e.name, r.provider FROM entities e
		LEFT JOIN entity_related_providers r ON r.entity_id = e.id`)
	if err != nil {
		return nil, fmt.Errorf("list entities: %w", err)
	}
	defer rows.Close()
	by := map[string]*billing.Entity{}
	for rows.Next() {
		var (
			id, name string
			provider sql.NullString
		)
		if err := rows.Scan(&id, &name, &provider); err != nil {
			return nil, fmt.Errorf("list entities: %w", err)
		}
		e := by[id]
		if e == nil {
			e = &billing.Entity{ID: id, Name: name}
			by[id] = e
		}
		if provider.Valid {
			e.RelatedProviders = append(e.RelatedProviders, provider.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list entities: %w", err)
	}
	out := make([]billing.Entity, 0, len(by))
	for _, e := range by {
		sort.Strings(e.RelatedProviders)
		var err error
		if e.Categories, err = s.entityCategories(ctx, s.r, e.ID); err != nil {
			return nil, fmt.Errorf("list entities: %w", err)
		}
		out = append(out, *e)
	}
	// Sorted here, not by ORDER BY: PostgreSQL's collation may order text
	// otherwise than SQLite's bytes.
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// MapTenant says which entity a provider's tenant label is (replacing a
// previous mapping; records already billed keep theirs).
func (s *Store) MapTenant(ctx context.Context, provider, tenant, entityID string) error {
	what := fmt.Sprintf("map tenant %q of provider %q", tenant, provider)
	if err := billing.ValidateMapping(provider, tenant, entityID); err != nil {
		return invalidBilling(what, err)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.mustExist(ctx, tx, "entities", "entity", entityID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		_, err := s.exec(ctx, tx, `INSERT INTO tenant_entities (provider, tenant, entity_id) VALUES (?, ?, ?)
			ON CONFLICT (provider, tenant) DO UPDATE SET entity_id = excluded.entity_id`, provider, tenant, entityID)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// mustExist returns ErrBillingConflict unless table has a row with id:
// an operation that refers to a missing program or entity.
func (s *Store) mustExist(ctx context.Context, tx *sql.Tx, table, what, id string) error {
	var n int
	if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM `+table+` WHERE id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("look up %s %q: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s %q does not exist", ErrBillingConflict, what, id)
	}
	return nil
}

// AddProgram creates a program. Programs are immutable once created.
func (s *Store) AddProgram(ctx context.Context, p billing.Program) error {
	what := fmt.Sprintf("add program %q", p.ID)
	p = billing.CanonicalProgram(p)
	if err := billing.ValidateProgram(p); err != nil {
		return invalidBilling(what, err)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO programs (id, issuer, name, ratio_bp, cap_year_fen, cap_lifetime_fen,
			valid_from_ms, valid_to_ms, rounding, settlement, created, voucher_term_months, voucher_term_from,
			voucher_min_fen, voucher_max_fen, budget_year_fen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Issuer, p.Name, int64(p.Ratio), int64(p.CapPerYear), int64(p.CapLifetime),
			p.ValidFrom.UnixMilli(), p.ValidTo.UnixMilli(), p.Rounding, p.Settlement, time.Now().UnixMilli(),
			p.VoucherTermMonths, p.TermFrom, int64(p.VoucherMin), int64(p.VoucherMax), int64(p.BudgetPerYear))
		if s.d.isUnique(err) {
			return fmt.Errorf("%s: %w: the id exists", what, ErrBillingConflict)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for m, r := range p.ModelRatios {
			if _, err := s.exec(ctx, tx, `INSERT INTO program_ratios (program_id, model, ratio_bp) VALUES (?, ?, ?)`, p.ID, m, int64(r)); err != nil {
				return fmt.Errorf("%s: ratio of %q: %w", what, m, err)
			}
		}
		if err := s.programTermRows(ctx, tx, p); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, m := range p.Models {
			if _, err := s.exec(ctx, tx, `INSERT INTO program_models (program_id, model) VALUES (?, ?)`, p.ID, m); err != nil {
				return fmt.Errorf("%s: model %q: %w", what, m, err)
			}
		}
		return nil
	})
}

// Programs lists programs by id.
func (s *Store) Programs(ctx context.Context) ([]billing.Program, error) {
	ps, err := s.readPrograms(ctx, s.r, nil)
	if err != nil {
		return nil, fmt.Errorf("list programs: %w", err)
	}
	return ps, nil
}

// IssueVoucher creates a voucher; Balance is set to Face and Status to
// active. An already-expired voucher is refused.
func (s *Store) IssueVoucher(ctx context.Context, v billing.Voucher) error {
	return s.IssueVoucherAt(ctx, v, time.Now())
}

// IssueVoucherAt is IssueVoucher with the time of issue given: a voucher
// expired at now, or outside its program's validity, is refused.
func (s *Store) IssueVoucherAt(ctx context.Context, v billing.Voucher, now time.Time) error {
	what := fmt.Sprintf("issue voucher %q", v.ID)
	v.Balance, v.Status = v.Face, billing.VoucherActive
	if err := billing.ValidateVoucher(v); err != nil {
		return invalidBilling(what, err)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		ps, err := s.readPrograms(ctx, tx, []string{v.Program})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(ps) == 0 {
			return fmt.Errorf("%s: %w: program %q does not exist", what, ErrBillingConflict, v.Program)
		}
		if err := s.mustExist(ctx, tx, "entities", "holder", v.Holder); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := billing.CheckIssue(v, ps[0], now); err != nil {
			return invalidBilling(what, err)
		}
		_, err = s.exec(ctx, tx, `INSERT INTO vouchers (id, program_id, entity_id, face_fen, balance_fen, issued_ms, expires_ms, status, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, v.ID, v.Program, v.Holder, int64(v.Face), int64(v.Balance),
			v.Issued.UnixMilli(), v.Expires.UnixMilli(), v.Status, now.UnixMilli())
		if s.d.isUnique(err) {
			return fmt.Errorf("%s: %w: the id exists", what, ErrBillingConflict)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		s.logVoucher(tx, VoucherMovement{Movement: MoveIssue, Voucher: v.ID, Entity: v.Holder, AmountFen: int64(v.Face),
			TimeMs: now.UnixMilli(), ExpiresMs: v.Expires.UnixMilli()})
		return nil
	})
}

// SetVoucherStatus suspends, reactivates or revokes a voucher. Revoking is
// final: a revoked voucher cannot be reactivated or suspended.
func (s *Store) SetVoucherStatus(ctx context.Context, id, status string) error {
	what := fmt.Sprintf("set status of voucher %q", id)
	switch status {
	case billing.VoucherActive, billing.VoucherSuspended, billing.VoucherRevoked:
	default:
		return invalidBilling(what, &billing.FieldError{Object: "voucher", ID: id, Field: "status",
			Msg: fmt.Sprintf("%q is not %q, %q or %q", status, billing.VoucherActive, billing.VoucherSuspended, billing.VoucherRevoked)})
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var cur string
		err := s.queryRowTx(ctx, tx, `SELECT status FROM vouchers WHERE id = ?`+s.d.forUpdate, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %w: no such voucher", what, ErrBillingNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if cur == billing.VoucherRevoked && status != billing.VoucherRevoked {
			return fmt.Errorf("%s: %w: the voucher is revoked, which is final", what, ErrBillingConflict)
		}
		if _, err := s.exec(ctx, tx, `UPDATE vouchers SET status = ? WHERE id = ?`, status, id); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return s.logVoucherStatus(ctx, tx, id, status, time.Now())
	})
}

// voucherColumns are what scanVoucher reads, in order.
const voucherColumns = `id, program_id, entity_id, face_fen, balance_fen, issued_ms, expires_ms, status, first_use_ms`

func scanVoucher(rows rowScanner) (billing.Voucher, error) {
	var (
		v                     billing.Voucher
		face, bal, is, ex, fu int64
	)
	err := rows.Scan(&v.ID, &v.Program, &v.Holder, &face, &bal, &is, &ex, &v.Status, &fu)
	v.Face, v.Balance, v.Issued, v.Expires = billing.Fen(face), billing.Fen(bal), msTime(is), msTime(ex)
	v.FirstUse = optTime(fu)
	return v, err
}

// Vouchers lists vouchers by id, of one entity if entityID is not "".
func (s *Store) Vouchers(ctx context.Context, entityID string) ([]billing.Voucher, error) {
	out, err := listWhere(ctx, s, "list vouchers", scanVoucher, voucherColumns, "vouchers", "entity_id", entityID)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// msTime is a stored Unix ms time, in UTC.
func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// entityCategories reads an entity's categories by name, then start.
func (s *Store) entityCategories(ctx context.Context, q queryer, id string) ([]billing.Category, error) {
	rows, err := q.QueryContext(ctx, s.d.rebind(`SELECT category, valid_from_ms, valid_to_ms FROM entity_categories WHERE entity_id = ?`), id)
	if err != nil {
		return nil, fmt.Errorf("read categories of entity %q: %w", id, err)
	}
	defer rows.Close()
	var out []billing.Category
	for rows.Next() {
		var (
			c        billing.Category
			from, to int64
		)
		if err := rows.Scan(&c.Name, &from, &to); err != nil {
			return nil, fmt.Errorf("read categories of entity %q: %w", id, err)
		}
		c.From, c.To = msTime(from), optTime(to)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read categories of entity %q: %w", id, err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].From.Before(out[j].From)
	})
	return out, nil
}
