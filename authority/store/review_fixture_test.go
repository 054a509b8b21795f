package store

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// hold puts a billed charge in the review queue as ingest does for usage
// that looks like no work: charges.review 'held' and a reviews row holding
// its subsidy, with grants, balances and counters as billing left them.
func hold(t testing.TB, s *Store, recordID, reason string) {
	t.Helper()
	ctx := context.Background()
	must(t, s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `UPDATE charges SET review = ? WHERE record_id = ?`, billing.ReviewHeld, recordID); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO reviews (record_id, node_id, provider, tenant, entity_id, window_start_ms,
				reason, held_fen, status, created)
			SELECT c.record_id, r.node_id, c.provider, c.tenant, c.entity_id, c.window_start_ms, ?, c.subsidy_fen, ?, ?
			FROM charges c JOIN records r ON r.record_id = c.record_id WHERE c.record_id = ?`,
			reason, billing.ReviewHeld, t0.UnixMilli(), recordID)
		return err
	}))
}

// ledgerState is what a review decision may change: balances, yearly
// counters (program/entity/year), and grants per record.
type ledgerState struct {
	balances map[string]billing.Fen
	granted  map[string]billing.Fen // "P1/E1/2026"
	grants   map[string]billing.Fen // record id → sum of its grants
}

func readLedger(t testing.TB, s *Store) ledgerState {
	t.Helper()
	ctx := context.Background()
	st := ledgerState{balances: map[string]billing.Fen{}, granted: map[string]billing.Fen{}, grants: map[string]billing.Fen{}}
	scan := func(q string, fn func(rows *sql.Rows) error) {
		rows, err := s.query(ctx, q)
		must(t, err)
		defer rows.Close()
		for rows.Next() {
			must(t, fn(rows))
		}
		must(t, rows.Err())
	}
	scan(`SELECT id, balance_fen FROM vouchers`, func(rows *sql.Rows) error {
		var (
			id string
			b  int64
		)
		err := rows.Scan(&id, &b)
		st.balances[id] = billing.Fen(b)
		return err
	})
	scan(`SELECT program_id, entity_id, year, granted_fen FROM subsidy_carries`, func(rows *sql.Rows) error {
		var (
			p, e string
			y, g int64
		)
		err := rows.Scan(&p, &e, &y, &g)
		st.granted[p+"/"+e+"/"+time.Date(int(y), 1, 1, 0, 0, 0, 0, time.UTC).Format("2006")] = billing.Fen(g)
		return err
	})
	scan(`SELECT record_id, SUM(amount_fen) FROM grants GROUP BY record_id`, func(rows *sql.Rows) error {
		var (
			r string
			a int64
		)
		err := rows.Scan(&r, &a)
		st.grants[r] = billing.Fen(a)
		return err
	})
	return st
}

// checkLedgerAgrees: what left each voucher is what its grants hold, and
// the yearly counters sum to the grants.
func checkLedgerAgrees(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.query(ctx, `SELECT v.id, v.face_fen - v.balance_fen, COALESCE((SELECT SUM(g.amount_fen) FROM grants g WHERE g.voucher_id = v.id), 0)
		FROM vouchers v`)
	must(t, err)
	defer rows.Close()
	for rows.Next() {
		var (
			id          string
			spent, sumG int64
		)
		must(t, rows.Scan(&id, &spent, &sumG))
		if spent != sumG {
			t.Errorf("voucher %s: %d fen left it, its grants hold %d", id, spent, sumG)
		}
	}
	must(t, rows.Err())
	var granted, grants int64
	must(t, s.queryRow(ctx, `SELECT COALESCE(SUM(granted_fen), 0) FROM subsidy_carries`).Scan(&granted))
	must(t, s.queryRow(ctx, `SELECT COALESCE(SUM(amount_fen), 0) FROM grants`).Scan(&grants))
	if granted != grants {
		t.Errorf("yearly counters sum to %d fen, the grants to %d", granted, grants)
	}
}
