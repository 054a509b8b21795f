package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// The review queue (docs/billing.md, "Held subsidies"): ingest holds the
// subsidy of usage that looks like no work (charges.review 'held' and a
// reviews row); an operator approves or rejects it. See the package doc's
// "Review queue" for what each decision changes and the locks it takes.

// Review bounds.
const (
	DefaultReviewLimit = 1000
	MaxReviewLimit     = 10_000
	// MaxReviewNote bounds a decision's note.
	MaxReviewNote = 2 << 10
)

// Review is a held subsidy and its decision.
type Review struct {
	RecordID    string      `json:"record_id"`
	Node        string      `json:"node"`
	Provider    string      `json:"provider"`
	Tenant      string      `json:"tenant"`
	Entity      string      `json:"entity"`
	WindowStart time.Time   `json:"window_start"`
	Reason      string      `json:"reason"`
	Held        billing.Fen `json:"held_fen"` // the subsidy held: what a rejection returns
	Status      string      `json:"status"`   // billing.ReviewHeld, ReviewApproved or ReviewRejected
	Created     time.Time   `json:"created"`
	Decided     time.Time   `json:"decided,omitzero"` // zero while held
	DecidedBy   string      `json:"decided_by,omitempty"`
	Note        string      `json:"note,omitempty"`
}

// ReviewFilter selects reviews; zero fields select everything.
type ReviewFilter struct {
	Status   string // billing.ReviewHeld, ReviewApproved, ReviewRejected or ""
	Provider string
	Entity   string
	Node     string
	// Limit is the most returned, oldest first (then by window start): 0 is DefaultReviewLimit,
	// above MaxReviewLimit is MaxReviewLimit.
	Limit int
}

const reviewColumns = `record_id, node_id, provider, tenant, entity_id, window_start_ms, reason, held_fen, status,
	created, decided_ms, decided_by, note`

func scanReview(row rowScanner) (Review, error) {
	var (
		r                Review
		ws, held, create int64
		decided          sql.NullInt64
	)
	err := row.Scan(&r.RecordID, &r.Node, &r.Provider, &r.Tenant, &r.Entity, &ws, &r.Reason, &held, &r.Status,
		&create, &decided, &r.DecidedBy, &r.Note)
	r.WindowStart, r.Held, r.Created = msTime(ws), billing.Fen(held), msTime(create)
	if decided.Valid {
		r.Decided = msTime(decided.Int64)
	}
	return r, err
}

// checkReviewStatus refuses a status that is not a review's.
func checkReviewStatus(what, status string) error {
	switch status {
	case billing.ReviewHeld, billing.ReviewApproved, billing.ReviewRejected:
		return nil
	}
	return invalidBilling(what, &billing.FieldError{Object: "review", Field: "status",
		Msg: fmt.Sprintf("%q is not %q, %q or %q", status, billing.ReviewHeld, billing.ReviewApproved, billing.ReviewRejected)})
}

// ListReviews lists the reviews f selects, oldest first.
func (s *Store) ListReviews(ctx context.Context, f ReviewFilter) ([]Review, error) {
	const what = "list reviews"
	if f.Status != "" {
		if err := checkReviewStatus(what, f.Status); err != nil {
			return nil, err
		}
	}
	var w filter
	w.eq("status", f.Status)
	w.eq("provider", f.Provider)
	w.eq("entity_id", f.Entity)
	w.eq("node_id", f.Node)
	// Oldest first, then by window; record_id is hex, which orders alike
	// under every collation.
	return queryList(ctx, s, what, scanReview, `SELECT `+reviewColumns+` FROM reviews`+w.where()+
		` ORDER BY created, window_start_ms, record_id LIMIT ?`, append(w.args, clampLimit(f.Limit, DefaultReviewLimit, MaxReviewLimit))...)
}

// ApproveReview pays a held subsidy: the charge's review and the review's
// status become approved; no money moves (the vouchers paid at ingest).
// by names the operator; note is optional. A review that is not held is
// refused (ErrReviewDecided, a billing conflict); an unknown record is
// ErrReviewNotFound (billing not found).
func (s *Store) ApproveReview(ctx context.Context, recordID, by, note string, now time.Time) (Review, error) {
	return s.decide(ctx, recordID, by, note, now, billing.ReviewApproved)
}

// RejectReview refuses a held subsidy: every grant of the record goes back
// to its voucher (its balance grows by the amount, whatever the voucher's
// status now), the yearly counter of the charge's (program, entity, year
// of its window start in China Standard Time) shrinks by it, the grants are
// deleted and the charge's subsidy becomes 0, so the tenant owes its whole
// cost. note, the reason, is required. Errors as ApproveReview.
func (s *Store) RejectReview(ctx context.Context, recordID, by, note string, now time.Time) (Review, error) {
	return s.decide(ctx, recordID, by, note, now, billing.ReviewRejected)
}

// checkDecision validates a decision's operator and note.
func checkDecision(recordID, by, note string, status string) error {
	var fe []error
	switch err := protocol.CheckName("operator", by); {
	case by == "":
		fe = append(fe, &billing.FieldError{Object: "review", ID: recordID, Field: "by", Msg: "required: who decides"})
	case err != nil:
		fe = append(fe, &billing.FieldError{Object: "review", ID: recordID, Field: "by", Msg: err.Error()})
	}
	switch {
	case strings.TrimSpace(note) == "" && status == billing.ReviewRejected:
		fe = append(fe, &billing.FieldError{Object: "review", ID: recordID, Field: "note",
			Msg: "required: say why the subsidy is rejected"})
	case len(note) > MaxReviewNote:
		fe = append(fe, &billing.FieldError{Object: "review", ID: recordID, Field: "note",
			Msg: fmt.Sprintf("%d bytes, at most %d", len(note), MaxReviewNote)})
	case !utf8.ValidString(note) || strings.ContainsFunc(note, func(r rune) bool {
		return r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.In(r, unicode.Cf))
	}):
		fe = append(fe, &billing.FieldError{Object: "review", ID: recordID, Field: "note",
			Msg: "must be UTF-8 text without control or format characters (newlines and tabs are fine)"})
	}
	return errors.Join(fe...)
}

func (s *Store) decide(ctx context.Context, recordID, by, note string, now time.Time, status string) (Review, error) {
	verb := map[string]string{billing.ReviewApproved: "approve", billing.ReviewRejected: "reject"}[status]
	what := fmt.Sprintf("%s review of record %q", verb, recordID)
	if err := checkDecision(recordID, by, note, status); err != nil {
		return Review{}, invalidBilling(what, err)
	}
	var out Review
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		// The entity first (billing's lock order, billing.go): read which
		// it is without a lock, lock it, then lock and re-read the review,
		// which a concurrent decision may have changed meanwhile.
		var entity string
		err := s.queryRowTx(ctx, tx, `SELECT c.entity_id FROM reviews r JOIN charges c ON c.record_id = r.record_id
			WHERE r.record_id = ?`, recordID).Scan(&entity)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %w: %w", what, ErrBillingNotFound, ErrReviewNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if status == billing.ReviewRejected && entity != "" {
			var id string
			if err := s.queryRowTx(ctx, tx, `SELECT id FROM entities WHERE id = ?`+s.d.forUpdate, entity).Scan(&id); err != nil {
				return fmt.Errorf("%s: lock entity %q: %w", what, entity, err)
			}
		}
		r, err := scanReview(s.queryRowTx(ctx, tx, `SELECT `+reviewColumns+` FROM reviews WHERE record_id = ?`+s.d.forUpdate, recordID))
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if r.Status != billing.ReviewHeld {
			return fmt.Errorf("%s: %w: %w: %s by %s at %s", what, ErrBillingConflict, ErrReviewDecided,
				r.Status, r.DecidedBy, r.Decided.Format(time.RFC3339))
		}
		if err := s.logDecision(ctx, tx, recordID, entity, status, now); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		set := `review = ?`
		if status == billing.ReviewRejected {
			if err := s.returnGrants(ctx, tx, recordID); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			set += `, subsidy_fen = 0`
		}
		if _, err := s.exec(ctx, tx, `UPDATE charges SET `+set+` WHERE record_id = ?`, status, recordID); err != nil {
			return fmt.Errorf("%s: update charge: %w", what, err)
		}
		if _, err := s.exec(ctx, tx, `UPDATE reviews SET status = ?, decided_ms = ?, decided_by = ?, note = ? WHERE record_id = ?`,
			status, now.UnixMilli(), by, note, recordID); err != nil {
			return fmt.Errorf("%s: update review: %w", what, err)
		}
		r.Status, r.Decided, r.DecidedBy, r.Note = status, msTime(now.UnixMilli()), by, note
		out = r
		action := ActionReviewApprove
		if status == billing.ReviewRejected {
			action = ActionReviewReject
		}
		return s.recordAction(ctx, tx, action, r.Node, map[string]any{
			"record": recordID, "by": by, "note": note, "held_fen": int64(r.Held)}, now)
	})
	return out, err
}

// returnGrants gives every grant of a charge back to its voucher and takes
// it off the yearly counter, then deletes the grants. The caller holds
// the charge's entity; vouchers are locked by id, then the counter (the
// order of billing.go).
func (s *Store) returnGrants(ctx context.Context, tx *sql.Tx, recordID string) error {
	var (
		program, entity string
		ws, subsidy     int64
	)
	if err := s.queryRowTx(ctx, tx, `SELECT program_id, entity_id, window_start_ms, subsidy_fen FROM charges WHERE record_id = ?`,
		recordID).Scan(&program, &entity, &ws, &subsidy); err != nil {
		return fmt.Errorf("read charge: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT voucher_id, amount_fen FROM grants WHERE record_id = ?`), recordID)
	if err != nil {
		return fmt.Errorf("read grants: %w", err)
	}
	grants := map[string]int64{}
	var total int64
	for rows.Next() {
		var (
			v string
			a int64
		)
		if err := rows.Scan(&v, &a); err != nil {
			rows.Close()
			return fmt.Errorf("read grants: %w", err)
		}
		grants[v] += a
		total += a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read grants: %w", err)
	}
	if total != subsidy {
		return fmt.Errorf("the grants sum to %d fen, the charge's subsidy is %d: the ledger disagrees with itself", total, subsidy)
	}
	if total == 0 {
		return nil
	}
	ids := make([]string, 0, len(grants))
	for v := range grants {
		ids = append(ids, v)
	}
	sort.Strings(ids)
	for _, v := range ids {
		var bal, face int64
		if err := s.queryRowTx(ctx, tx, `SELECT balance_fen, face_fen FROM vouchers WHERE id = ?`+s.d.forUpdate, v).Scan(&bal, &face); err != nil {
			return fmt.Errorf("lock voucher %q: %w", v, err)
		}
		if bal+grants[v] > face {
			return fmt.Errorf("voucher %q: returning %d fen to a balance of %d passes its face %d", v, grants[v], bal, face)
		}
		if _, err := s.exec(ctx, tx, `UPDATE vouchers SET balance_fen = balance_fen + ? WHERE id = ?`, grants[v], v); err != nil {
			return fmt.Errorf("return %d fen to voucher %q: %w", grants[v], v, err)
		}
	}
	year := billing.Year(msTime(ws))
	var granted int64
	err = s.queryRowTx(ctx, tx, `SELECT granted_fen FROM subsidy_carries WHERE program_id = ? AND entity_id = ? AND year = ?`+s.d.forUpdate,
		program, entity, year).Scan(&granted)
	if err != nil {
		return fmt.Errorf("lock the %d counter of program %q, entity %q: %w", year, program, entity, err)
	}
	if granted < total {
		return fmt.Errorf("the %d counter of program %q, entity %q holds %d fen, less than the %d returned", year, program, entity, granted, total)
	}
	if _, err := s.exec(ctx, tx, `UPDATE subsidy_carries SET granted_fen = granted_fen - ? WHERE program_id = ? AND entity_id = ? AND year = ?`,
		total, program, entity, year); err != nil {
		return fmt.Errorf("update the %d counter of program %q, entity %q: %w", year, program, entity, err)
	}
	if err := s.returnBudget(ctx, tx, program, year, total); err != nil {
		return err
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM grants WHERE record_id = ?`, recordID); err != nil {
		return fmt.Errorf("delete grants: %w", err)
	}
	return nil
}
