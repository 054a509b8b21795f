package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// reviewSetup bills four hours of acme's usage at 1000 fen, half
// subsidized by P1 through v1 (700 fen, expiring first) and v2: the second
// hour is paid by both vouchers, the fourth falls in 2027 (CST). It
// returns the records' ids.
func reviewSetup(t *testing.T, s *Store) []string {
	t.Helper()
	ctx := context.Background()
	billSetup(t, s)
	must(t, s.AddProgram(ctx, testProgram("P1", func(p *billing.Program) { p.Ratio = 5000 })))
	must(t, s.IssueVoucherAt(ctx, testVoucher("v1", "P1", "E1", 700, mar2027), y2026))
	must(t, s.IssueVoucherAt(ctx, testVoucher("v2", "P1", "E1", 10_000, y2028), y2026))
	n := newBillNode(t, s, "n1")
	y27 := time.Date(2027, 1, 1, 0, 30, 0, 0, cst).UTC()
	sub := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme"), n.hour(1, bt.Add(2*time.Hour), "acme"), n.hour(1, y27, "acme"))
	var ids []string
	for _, r := range sub.Batch.Records {
		ids = append(ids, r.ID)
	}
	return ids
}

// recordOf is a record with just its id, for lineOf.
func recordOf(id string) protocol.Record { return protocol.Record{ID: id} }

// checkStatement checks E1's statement totals over 2026-2027 and p1's
// claim per voucher ("program/voucher:records:fen", space separated).
func checkStatement(t *testing.T, s *Store, want billing.Totals, byVoucher string) {
	t.Helper()
	ctx := context.Background()
	st, err := s.Statement(ctx, "E1", y2026, y2028)
	must(t, err)
	if st.Totals != want {
		t.Errorf("statement totals %+v, want %+v", st.Totals, want)
	}
	c, err := s.Claim(ctx, "p1", y2026, y2028)
	must(t, err)
	var got []string
	for _, v := range c.ByVoucher {
		got = append(got, fmt.Sprintf("%s/%s:%d:%d", v.Program, v.Voucher, v.Records, v.Amount))
	}
	if strings.Join(got, " ") != byVoucher || c.Totals != want {
		t.Errorf("claim: by voucher %v, totals %+v; want %s, %+v", got, c.Totals, byVoucher, want)
	}
}

func TestReviewDecisions(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		ids := reviewSetup(t, s)
		hold(t, s, ids[1], "energy 0 mJ over the window")
		hold(t, s, ids[2], "utilization 0%")
		hold(t, s, ids[3], "energy 0 mJ over the window")
		before := readLedger(t, s)
		wantBefore := ledgerState{
			balances: map[string]billing.Fen{"v1": 0, "v2": 8_700},
			granted:  map[string]billing.Fen{"P1/E1/2026": 1_500, "P1/E1/2027": 500},
			grants:   map[string]billing.Fen{ids[0]: 500, ids[1]: 500, ids[2]: 500, ids[3]: 500},
		}
		if !maps.Equal(before.balances, wantBefore.balances) || !maps.Equal(before.granted, wantBefore.granted) ||
			!maps.Equal(before.grants, wantBefore.grants) {
			t.Fatalf("ledger as billed: %+v, want %+v", before, wantBefore)
		}

		// Held subsidies are apart from paid ones: not claimable, not owed.
		checkStatement(t, s, billing.Totals{Records: 4, GPUMillis: 4 * 3_600_000, Cost: 4000, Subsidy: 500, Held: 1500,
			TenantPaysProvider: 4000, Reimbursed: 500,
			Payable: 2000, HeldRecords: 3}, "P1/v1:1:500")
		if l := lineOf(t, s, recordOf(ids[1])); l.Review != billing.ReviewHeld || l.Held != 500 || l.Subsidy != 0 ||
			l.Payable != 500 || grantsString(l.Grants) != "v1:200;v2:300" {
			t.Errorf("held line: %+v", l)
		}

		held, err := s.ListReviews(ctx, ReviewFilter{Status: billing.ReviewHeld})
		must(t, err)
		if len(held) != 3 || held[0].Held != 500 || held[0].Entity != "E1" || held[0].Node != "n1" || held[0].Tenant != "acme" ||
			held[0].Provider != "p1" || held[0].Reason == "" || !held[0].Decided.IsZero() {
			t.Fatalf("held reviews: %+v", held)
		}
		for _, tc := range []struct {
			name string
			f    ReviewFilter
			n    int
		}{
			{"all", ReviewFilter{}, 3},
			{"provider", ReviewFilter{Provider: "p1"}, 3},
			{"other provider", ReviewFilter{Provider: "p2"}, 0},
			{"entity", ReviewFilter{Entity: "E1"}, 3},
			{"node", ReviewFilter{Node: "n2"}, 0},
			{"approved", ReviewFilter{Status: billing.ReviewApproved}, 0},
			{"limit", ReviewFilter{Limit: 2}, 2},
		} {
			got, err := s.ListReviews(ctx, tc.f)
			if err != nil || len(got) != tc.n {
				t.Errorf("%s: %d reviews, %v; want %d", tc.name, len(got), err, tc.n)
			}
		}
		if _, err := s.ListReviews(ctx, ReviewFilter{Status: "pending"}); !errors.Is(err, ErrInvalidBilling) || !strings.Contains(err.Error(), "status") {
			t.Errorf("status pending: %v, want invalid naming status", err)
		}

		now := t0.Add(time.Hour)
		for _, tc := range []struct {
			name, by, note, field string
		}{
			{"no note", "alice", "", "note"},
			{"blank note", "alice", "  \n", "note"},
			{"no operator", "", "fake load", "by"},
			{"control character", "alice", "fake\x00load", "note"},
		} {
			_, err := s.RejectReview(ctx, ids[1], tc.by, tc.note, now)
			if !errors.Is(err, ErrInvalidBilling) || !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("reject with %s: %v, want invalid naming %s", tc.name, err, tc.field)
			}
		}
		if got := readLedger(t, s); !maps.Equal(got.balances, before.balances) {
			t.Fatalf("a refused decision changed balances: %v", got.balances)
		}

		// Reject the hour both vouchers paid: each gets its part back.
		r, err := s.RejectReview(ctx, ids[1], "alice", "GPU idle: energy flat over the window", now)
		must(t, err)
		if r.Status != billing.ReviewRejected || r.DecidedBy != "alice" || !r.Decided.Equal(now) || r.Held != 500 ||
			r.Note != "GPU idle: energy flat over the window" {
			t.Errorf("rejected review: %+v", r)
		}
		// And the 2027 hour: its own year's counter.
		_, err = s.RejectReview(ctx, ids[3], "alice", "no work", now)
		must(t, err)
		after := readLedger(t, s)
		wantAfter := ledgerState{
			balances: map[string]billing.Fen{"v1": 200, "v2": 9_500},
			granted:  map[string]billing.Fen{"P1/E1/2026": 1_000, "P1/E1/2027": 0},
			grants:   map[string]billing.Fen{ids[0]: 500, ids[2]: 500},
		}
		if !maps.Equal(after.balances, wantAfter.balances) || !maps.Equal(after.granted, wantAfter.granted) ||
			!maps.Equal(after.grants, wantAfter.grants) {
			t.Errorf("ledger after the rejections: %+v, want %+v", after, wantAfter)
		}
		checkLedgerAgrees(t, s)
		var sub int64
		var review string
		must(t, s.queryRow(ctx, `SELECT subsidy_fen, review FROM charges WHERE record_id = ?`, ids[1]).Scan(&sub, &review))
		if sub != 0 || review != billing.ReviewRejected {
			t.Errorf("rejected charge: subsidy %d, review %q", sub, review)
		}

		// Approve: nothing moves.
		a, err := s.ApproveReview(ctx, ids[2], "bob", "", now)
		must(t, err)
		if a.Status != billing.ReviewApproved || a.DecidedBy != "bob" {
			t.Errorf("approved review: %+v", a)
		}
		if got := readLedger(t, s); !maps.Equal(got.balances, after.balances) || !maps.Equal(got.granted, after.granted) {
			t.Errorf("approving moved money: %+v", got)
		}
		must(t, s.queryRow(ctx, `SELECT subsidy_fen, review FROM charges WHERE record_id = ?`, ids[2]).Scan(&sub, &review))
		if sub != 500 || review != billing.ReviewApproved {
			t.Errorf("approved charge: subsidy %d, review %q", sub, review)
		}

		// Decided once.
		for _, tc := range []struct {
			name string
			f    func() (Review, error)
		}{
			{"reject twice", func() (Review, error) { return s.RejectReview(ctx, ids[1], "carol", "again", now) }},
			{"approve a rejected one", func() (Review, error) { return s.ApproveReview(ctx, ids[1], "carol", "", now) }},
			{"approve twice", func() (Review, error) { return s.ApproveReview(ctx, ids[2], "carol", "", now) }},
			{"reject an approved one", func() (Review, error) { return s.RejectReview(ctx, ids[2], "carol", "changed my mind", now) }},
		} {
			if _, err := tc.f(); !errors.Is(err, ErrReviewDecided) || !errors.Is(err, ErrBillingConflict) {
				t.Errorf("%s: %v, want ErrReviewDecided (a conflict)", tc.name, err)
			}
		}
		if got := readLedger(t, s); !maps.Equal(got.balances, after.balances) {
			t.Errorf("a second decision moved money: %v", got.balances)
		}
		for _, id := range []string{ids[0], "no-such-record"} {
			if _, err := s.ApproveReview(ctx, id, "bob", "", now); !errors.Is(err, ErrReviewNotFound) || !errors.Is(err, ErrBillingNotFound) {
				t.Errorf("approve %s (not in review): %v, want ErrReviewNotFound", id, err)
			}
		}
		// Each decision is in the operator-action audit trail, with the
		// record, who decided, and the OS user who ran it; the refused
		// ones above are not.
		for _, tc := range []struct {
			action  string
			records []string
			by      string
		}{
			{ActionReviewReject, []string{ids[3], ids[1]}, "alice"}, // newest first
			{ActionReviewApprove, []string{ids[2]}, "bob"},
		} {
			acts, err := s.OperatorActions(ctx, ActionFilter{Action: tc.action})
			must(t, err)
			if len(acts) != len(tc.records) {
				t.Fatalf("%s: %d audit rows, want %d: %+v", tc.action, len(acts), len(tc.records), acts)
			}
			for i, a := range acts {
				var d struct {
					Record string `json:"record"`
					By     string `json:"by"`
				}
				if err := json.Unmarshal(a.Details, &d); err != nil || d.Record != tc.records[i] || d.By != tc.by ||
					a.Node != "n1" || !a.At.Equal(now) || !strings.HasPrefix(a.Actor, "user:") {
					t.Errorf("%s audit row %+v (%+v, %v), want record %s by %s", tc.action, a, d, err, tc.records[i], tc.by)
				}
			}
		}

		rev, err := s.ListReviews(ctx, ReviewFilter{})
		must(t, err)
		var states []string
		for _, r := range rev {
			states = append(states, r.Status)
		}
		if strings.Join(states, ",") != "rejected,approved,rejected" {
			t.Errorf("review states, oldest first: %v", states)
		}

		checkStatement(t, s, billing.Totals{Records: 4, GPUMillis: 4 * 3_600_000, Cost: 4000, Subsidy: 1000,
			TenantPaysProvider: 4000, Reimbursed: 1000,
			Payable: 3000, RejectedRecords: 2}, "P1/v1:1:500 P1/v2:1:500")
		if l := lineOf(t, s, recordOf(ids[1])); l.Review != billing.ReviewRejected || l.Held != 0 || l.Subsidy != 0 ||
			l.Payable != 1000 || len(l.Grants) != 0 {
			t.Errorf("rejected line: %+v", l)
		}
		if l := lineOf(t, s, recordOf(ids[2])); l.Review != billing.ReviewApproved || l.Subsidy != 500 || l.Payable != 500 {
			t.Errorf("approved line: %+v", l)
		}

		// What a rejection returned pays again: the next hour takes v1's
		// 200 fen first.
		n := &billNode{t: t, s: s, id: "n1", next: 5}
		must(t, s.queryRow(ctx, `SELECT head_hash FROM nodes WHERE id = 'n1'`).Scan(&n.prev))
		must(t, s.queryRow(ctx, `SELECT key_id FROM node_keys WHERE node_id = 'n1'`).Scan(&n.keyID))
		rec := n.ingest(n.hour(1, bt.Add(3*time.Hour), "acme")).Batch.Records[0]
		wantLine(t, lineOf(t, s, rec), 1000, 500, "v1:200;v2:300", billing.NoteSubsidized)
		checkLedgerAgrees(t, s)
	})
}

// TestConcurrentRejectAndIngest: an operator rejects held subsidies of an
// entity while two authority processes ingest usage billed to it. Both
// lock the entity first, then its vouchers, then its counters, so neither
// deadlocks the other (PostgreSQL would abort one with 40P01), and the
// ledger agrees with itself after: what left each voucher is what its
// grants hold, and the yearly counters sum to the grants.
func TestConcurrentRejectAndIngest(t *testing.T) {
	eachStorePair(t, func(t *testing.T, ctx context.Context, stores []*Store) {
		s := stores[0]
		billSetup(t, s)
		addProgram(t, s, "P1", func(p *billing.Program) { p.Ratio = 5000 })
		for _, v := range []string{"v1", "v2", "v3"} {
			issueE1(t, s, v, "P1", 4_000, y2028)
		}
		const hours = 8
		held := newBillNode(t, s, "held")
		var heldIDs []string
		for h := range hours {
			rec := held.ingest(held.hour(1, bt.Add(time.Duration(h)*time.Hour), "acme")).Batch.Records[0]
			hold(t, s, rec.ID, "energy 0 mJ")
			heldIDs = append(heldIDs, rec.ID)
		}
		var chains [][]Submission
		for i := range 2 {
			n := newBillNode(t, s, []string{"a", "b"}[i])
			var chain []Submission
			for h := range hours {
				at := bt.Add(time.Duration(h) * time.Hour)
				chain = append(chain, n.batch(n.hour(1, at, "acme"), n.hour(2, at, "acme")))
			}
			chains = append(chains, chain)
		}
		fns := []func(){func() {
			for i, id := range heldIDs {
				if _, err := stores[i%2].RejectReview(ctx, id, "alice", "no work", t0); err != nil {
					t.Errorf("reject %s: %v", id, err)
				}
			}
		}}
		for i, chain := range chains {
			fns = append(fns, func() {
				for _, sub := range chain {
					if _, err := stores[(i+1)%2].Ingest(ctx, sub); err != nil {
						t.Errorf("ingest: %v", err)
						return
					}
				}
			})
		}
		race(fns...)
		checkLedgerAgrees(t, s)
		var charges, rejected int
		must(t, s.queryRow(ctx, `SELECT COUNT(*), SUM(CASE WHEN review = 'rejected' THEN 1 ELSE 0 END) FROM charges`).Scan(&charges, &rejected))
		if charges != 5*hours || rejected != hours {
			t.Errorf("%d charges, %d rejected; want %d and %d", charges, rejected, 5*hours, hours)
		}
	})
}
