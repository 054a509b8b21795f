package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// openEnd is valid_to_ms of a card with no end.
const openEnd = math.MaxInt64

func cardEnd(t time.Time) int64 {
	if t.IsZero() {
		return openEnd
	}
	return t.UnixMilli()
}

func cardEndTime(ms int64) time.Time {
	if ms == openEnd {
		return time.Time{}
	}
	return msTime(ms)
}

// lockCardKey locks the (provider, model, profile) of rate cards for the
// rest of tx (creating its row the first time): adding and ending cards of
// one key are serialized, so the overlap check cannot race an insert.
func (s *Store) lockCardKey(ctx context.Context, tx *sql.Tx, provider, model, profile string) error {
	_, err := s.exec(ctx, tx, `INSERT INTO rate_card_keys (provider, model, mig_profile) VALUES (?, ?, ?)
		ON CONFLICT (provider, model, mig_profile) DO UPDATE SET provider = excluded.provider`, provider, model, profile)
	if err != nil {
		return fmt.Errorf("lock rate cards of %s/%s/%q: %w", provider, model, profile, err)
	}
	return nil
}

// AddRateCard creates a rate card; one overlapping a card of the same
// (provider, model, profile) is refused, naming that card.
func (s *Store) AddRateCard(ctx context.Context, c billing.RateCard) error {
	what := fmt.Sprintf("add rate card %q", c.ID)
	c.Model = billing.CanonicalModel(c.Model)
	if err := billing.ValidateRateCard(c); err != nil {
		return invalidBilling(what, err)
	}
	from, to := c.ValidFrom.UnixMilli(), cardEnd(c.ValidTo)
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockCardKey(ctx, tx, c.Provider, c.Model, c.MIGProfile); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		var (
			other      string
			oFrom, oTo int64
		)
		err := s.queryRowTx(ctx, tx, `SELECT id, valid_from_ms, valid_to_ms FROM rate_cards
			WHERE provider = ? AND model = ? AND mig_profile = ? AND valid_from_ms < ? AND valid_to_ms > ?
			ORDER BY valid_from_ms LIMIT 1`, c.Provider, c.Model, c.MIGProfile, to, from).Scan(&other, &oFrom, &oTo)
		switch {
		case err == nil:
			return fmt.Errorf("%s: %w: [%s, %s) overlaps rate card %q [%s, %s) of the same provider, model and profile",
				what, ErrBillingConflict, span(from), span(to), other, span(oFrom), span(oTo))
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%s: check overlaps: %w", what, err)
		}
		_, err = s.exec(ctx, tx, `INSERT INTO rate_cards (id, provider, model, mig_profile, price_fen_per_hour, valid_from_ms, valid_to_ms, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, c.Provider, c.Model, c.MIGProfile, int64(c.PricePerHour), from, to, time.Now().UnixMilli())
		if s.d.isUnique(err) {
			return fmt.Errorf("%s: %w: the id exists", what, ErrBillingConflict)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// span writes a card bound for errors.
func span(ms int64) string {
	if ms == openEnd {
		return "open"
	}
	return msTime(ms).Format(time.RFC3339Nano)
}

// EndRateCard sets an open card's end (to introduce a new price at at).
// Billing is final, so a card cannot end before a record it already
// priced: that is refused as a conflict.
func (s *Store) EndRateCard(ctx context.Context, id string, at time.Time) error {
	what := fmt.Sprintf("end rate card %q", id)
	if at.IsZero() {
		return invalidBilling(what, &billing.FieldError{Object: "rate card", ID: id, Field: "valid_to", Msg: "required"})
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var c billing.RateCard
		var from, to, price int64
		read := func(lock string) error {
			err := s.queryRowTx(ctx, tx, `SELECT provider, model, mig_profile, price_fen_per_hour, valid_from_ms, valid_to_ms
				FROM rate_cards WHERE id = ?`+lock, id).Scan(&c.Provider, &c.Model, &c.MIGProfile, &price, &from, &to)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s: %w: no such rate card", what, ErrBillingNotFound)
			}
			return err
		}
		if err := read(""); err != nil {
			return err
		}
		if err := s.lockCardKey(ctx, tx, c.Provider, c.Model, c.MIGProfile); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		// Re-read under the lock: another operator may have ended it. FOR
		// UPDATE also waits for ingests that priced with the card (they
		// hold it FOR SHARE, billing.go), so the check below sees them.
		if err := read(s.d.forUpdate); err != nil {
			return err
		}
		c.ID, c.PricePerHour, c.ValidFrom, c.ValidTo = id, billing.Fen(price), msTime(from), at
		if err := billing.ValidateRateCard(c); err != nil {
			return invalidBilling(what, err)
		}
		if to != openEnd {
			return fmt.Errorf("%s: %w: it already ends at %s", what, ErrBillingConflict, span(to))
		}
		var n, first int64
		// A record billed whole by the card whose window runs past at, or
		// a piece it priced that does, was billed by it after at too.
		err := s.queryRowTx(ctx, tx, `SELECT COUNT(*), COALESCE(MIN(s), 0) FROM (
				SELECT c.window_start_ms AS s FROM charges c JOIN records r ON r.record_id = c.record_id
				WHERE c.rate_card_id = ? AND r.window_end_ms > ?
					AND NOT EXISTS (SELECT 1 FROM charge_pieces cp WHERE cp.record_id = c.record_id)
				UNION ALL
				SELECT start_ms AS s FROM charge_pieces WHERE rate_card_id = ? AND end_ms > ?) priced`,
			id, at.UnixMilli(), id, at.UnixMilli()).Scan(&n, &first)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if n > 0 {
			return fmt.Errorf("%s: %w: it already priced %d records from %s on, and billing is final; end it at or after the last of them",
				what, ErrBillingConflict, n, span(first))
		}
		if _, err := s.exec(ctx, tx, `UPDATE rate_cards SET valid_to_ms = ? WHERE id = ?`, at.UnixMilli(), id); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// rateCardColumns are what scanRateCard reads, in order.
const rateCardColumns = `id, provider, model, mig_profile, price_fen_per_hour, valid_from_ms, valid_to_ms`

func scanRateCard(rows rowScanner) (billing.RateCard, error) {
	var (
		c               billing.RateCard
		price, from, to int64
	)
	err := rows.Scan(&c.ID, &c.Provider, &c.Model, &c.MIGProfile, &price, &from, &to)
	c.PricePerHour, c.ValidFrom, c.ValidTo = billing.Fen(price), msTime(from), cardEndTime(to)
	return c, err
}

// RateCards lists rate cards, of one provider if provider is not "", by
// provider, model, profile and start.
func (s *Store) RateCards(ctx context.Context, provider string) ([]billing.RateCard, error) {
	out, err := listWhere(ctx, s, "list rate cards", scanRateCard, rateCardColumns, "rate_cards", "provider", provider)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b billing.RateCard) int {
		return cmp.Or(strings.Compare(a.Provider, b.Provider), strings.Compare(a.Model, b.Model),
			strings.Compare(a.MIGProfile, b.MIGProfile), a.ValidFrom.Compare(b.ValidFrom))
	})
	return out, nil
}
