package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// wantRefused requires err to be invalid billing input whose message names
// field and says what.
func wantRefused(t *testing.T, err error, field, what string) {
	t.Helper()
	var fe *billing.FieldError
	if !errors.Is(err, ErrInvalidBilling) || !errors.As(err, &fe) || fe.Field != field || !strings.Contains(err.Error(), what) {
		t.Errorf("got %v; want invalid input naming %s: %s", err, field, what)
	}
}

// voucherOf is a voucher of the store by id.
func voucherOf(t *testing.T, s *Store, id string) billing.Voucher {
	t.Helper()
	vs, err := s.Vouchers(context.Background(), "")
	must(t, err)
	for _, v := range vs {
		if v.ID == id {
			return v
		}
	}
	t.Fatalf("no voucher %s", id)
	return billing.Voucher{}
}

// statementOf is E1's statement over 2026-2027.
func statementOf(t *testing.T, s *Store) billing.Statement {
	t.Helper()
	st, err := s.Statement(context.Background(), "E1", y2026, y2028)
	must(t, err)
	return st
}

// TestProgramTerms: the terms programs state (docs/billing.md, "What a
// program states"), case by case on both stores. The card is billSetup's:
// 1000 fen per H100-hour, so an hour costs 1000 fen.
func TestProgramTerms(t *testing.T) {
	ctx := context.Background()
	program, issue := addProgram, issueE1
	rules := []billingRule{
		// 1. Validity per program.
		{"a voucher longer than the program's term from issue is refused", func(t *testing.T, s *Store, _ *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.VoucherTermMonths, p.TermFrom = 12, billing.TermFromIssue })
			// Issued 2026-01-01, 24 months: the program allows 12.
			wantRefused(t, s.IssueVoucherAt(ctx, testVoucher("v24", "P1", "E1", 1000, y2028), y2026), "expires", "voucher term of 12 months")
			// 12 months to the day (2027-01-01 CST) is within it.
			must(t, s.IssueVoucherAt(ctx, testVoucher("v12", "P1", "E1", 1000, y2026.AddDate(1, 0, 0)), y2026))
		}},
		{"a term from first use starts at the first record it pays", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) {
				p.Ratio, p.VoucherTermMonths, p.TermFrom = 2000, 3, billing.TermFromFirstUse
			})
			issue(t, s, "v1", "P1", 100_000, y2028)
			// First use 2026-11-02 00:00 CST: the voucher now expires three
			// months on, 2027-02-02 00:00 CST.
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 200, "v1:200", billing.NoteSubsidized)
			v := voucherOf(t, s, "v1")
			if want := time.Date(2027, 2, 2, 0, 0, 0, 0, cst); !v.FirstUse.Equal(bt) || !v.Expires.Equal(want) {
				t.Errorf("voucher first use %s expires %s; want %s, %s", v.FirstUse, v.Expires, bt, want)
			}
			// The day after the term: no voucher pays.
			late := n.ingest(n.hour(1, time.Date(2027, 2, 3, 0, 0, 0, 0, cst), "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, late), 1000, 0, "", billing.NoteNoVoucher)
		}},
		// 2. Ratios and caps by category of entity.
		{"a category's ratio replaces the base, the model's adjustment applies on top", func(t *testing.T, s *Store, n *billNode) {
			// Base 50 %, H100 55 % (+5 points), early-stage firms 60 %.
			program(t, s, "P1", func(p *billing.Program) {
				p.Ratio = 5000
				p.ModelRatios = map[string]billing.BasisPoints{"H100-SXM5-80GB": 5500}
				p.CategoryTerms = map[string]billing.CategoryTerm{"early_stage": {Ratio: 6000}}
			})
			// E1 is early-stage from 12:00 on 2026-11-02.
			must(t, s.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme",
				Categories: []billing.Category{{Name: "early_stage", From: bt.Add(12 * time.Hour)}}}))
			issue(t, s, "v1", "P1", 100_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(12*time.Hour), "acme")).Batch.Records
			// Before: the model's 55 % of 1000 = 550. After: 60 + 5 = 65 %: 650.
			wantLine(t, lineOf(t, s, recs[0]), 1000, 550, "v1:550", billing.NoteSubsidized)
			wantLine(t, lineOf(t, s, recs[1]), 1000, 650, "v1:650", billing.NoteSubsidized)
			es, err := s.Entities(ctx)
			must(t, err)
			if len(es) != 1 || len(es[0].Categories) != 1 || es[0].Categories[0].Name != "early_stage" || !es[0].Categories[0].To.IsZero() {
				t.Errorf("entities %+v: the category did not round-trip", es)
			}
		}},
		{"a category's cap replaces the yearly cap", func(t *testing.T, s *Store, n *billNode) {
			// The smallest firms: 100 %, at most 15 CNY a year.
			program(t, s, "P1", func(p *billing.Program) {
				p.CategoryTerms = map[string]billing.CategoryTerm{"micro": {Ratio: 10000, CapPerYear: 1500}}
			})
			must(t, s.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme", Categories: []billing.Category{{Name: "micro", From: y2026, To: y2028}}}))
			issue(t, s, "v1", "P1", 100_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records
			// 100 % of 1000 = 1000; then 500 of the cap's 1500 are left.
			wantLine(t, lineOf(t, s, recs[0]), 1000, 1000, "v1:1000", billing.NoteSubsidized)
			l := lineOf(t, s, recs[1])
			wantLine(t, l, 1000, 500, "v1:500", billing.NotePartial)
			if l.Limit != billing.LimitYearCap || statementOf(t, s).Totals.CapRecords != 1 {
				t.Errorf("limit %q, totals %+v; want year_cap, 1 cap record", l.Limit, statementOf(t, s).Totals)
			}
		}},
		// 3. Settlement shown, and who pays whom.
		{"point of sale: the tenant pays its share, the provider claims the rest", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.Settlement = billing.SettlePointOfSale })
			issue(t, s, "v1", "P1", 100_000, y2028)
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			l := lineOf(t, s, r)
			// 20 % of 1000: the tenant pays 800 at the sale, the provider
			// claims 200 from the issuer.
			if l.Settlement != billing.SettlePointOfSale || l.TenantPaysProvider != 800 || l.ProviderClaims != 200 || l.Reimbursed != 0 {
				t.Errorf("line %+v", l)
			}
			c, err := s.Claim(ctx, "p1", y2026, y2028)
			must(t, err)
			if len(c.ByVoucher) != 1 || c.ByVoucher[0].Settlement != billing.SettlePointOfSale || c.Totals.ProviderClaims != 200 {
				t.Errorf("claim %+v %+v", c.ByVoucher, c.Totals)
			}
		}},
		{"after settlement: the tenant pays in full and is reimbursed", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", nil)
			issue(t, s, "v1", "P1", 100_000, y2028)
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			l := lineOf(t, s, r)
			if l.Settlement != billing.SettleAfter || l.TenantPaysProvider != 1000 || l.ProviderClaims != 0 || l.Reimbursed != 200 {
				t.Errorf("line %+v", l)
			}
			if tot := statementOf(t, s).Totals; tot.TenantPaysProvider != 1000 || tot.Reimbursed != 200 || tot.Payable != 800 {
				t.Errorf("totals %+v", tot)
			}
		}},
		// 4. Expiry and rate changes inside a window.
		{"a voucher expiring inside a window pays for the part before", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.Ratio = 5000 })
			issue(t, s, "v1", "P1", 100_000, bt.Add(20*time.Minute))
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			// 20 min = 1 200 000 ms: 333.33 fen, with the half-fen carry
			// 333 (remainder 0.83); 40 min: 666.67 + 0.83 = 667.5 → 667.
			// 50 % of 333 = 166.5 → 167 half up. The rest: no voucher.
			l := lineOf(t, s, r)
			wantLine(t, l, 1000, 167, "v1:167", billing.NoteSubsidized)
			want := []billing.Piece{
				{Start: bt, End: bt.Add(20 * time.Minute), GPUMillis: 1_200_000, RateCard: "h100", Cost: 333, Subsidy: 167, Program: "P1", Note: billing.NoteSubsidized},
				{Start: bt.Add(20 * time.Minute), End: bt.Add(time.Hour), GPUMillis: 2_400_000, RateCard: "h100", Cost: 667, Note: billing.NoteNoVoucher},
			}
			if !piecesEqual(l.Pieces, want) || statementOf(t, s).Totals.SplitRecords != 1 {
				t.Errorf("pieces %+v; want %+v", l.Pieces, want)
			}
		}},
		{"a 10 s record straddling an expiry is cut to the millisecond", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", nil)
			issue(t, s, "v1", "P1", 100_000, bt.Add(3333*time.Millisecond))
			// 7000 GPU-ms over 10 000 ms: floor(7000 × 3333 / 10000) = 2333
			// before the expiry, 4667 after.
			r := n.ingest(n.use(1, bt, 10*time.Second, "acme", 7000)).Batch.Records[0]
			l := lineOf(t, s, r)
			if len(l.Pieces) != 2 || l.Pieces[0].GPUMillis != 2333 || l.Pieces[1].GPUMillis != 4667 ||
				!l.Pieces[1].Start.Equal(bt.Add(3333*time.Millisecond)) {
				t.Errorf("pieces %+v", l.Pieces)
			}
		}},
		{"a rate change inside a window prices each part by its card", func(t *testing.T, s *Store, n *billNode) {
			must(t, s.EndRateCard(ctx, "h100", bt.Add(15*time.Minute)))
			must(t, s.AddRateCard(ctx, billing.RateCard{ID: "h100-new", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 2000, ValidFrom: bt.Add(15 * time.Minute)}))
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			// 15 min at 1000 fen/h = 250; 45 min at 2000 fen/h = 1500.
			l := lineOf(t, s, r)
			wantLine(t, l, 1750, 0, "", billing.NoteNoVoucher)
			if len(l.Pieces) != 2 || l.Pieces[0].RateCard != "h100" || l.Pieces[0].Cost != 250 || l.Pieces[1].RateCard != "h100-new" || l.Pieces[1].Cost != 1500 {
				t.Errorf("pieces %+v", l.Pieces)
			}
			// The new card priced 45 minutes up to bt+1h: it cannot end before that.
			if err := s.EndRateCard(ctx, "h100-new", bt.Add(30*time.Minute)); !errors.Is(err, ErrBillingConflict) {
				t.Errorf("ending a card inside a window it priced: %v; want a conflict", err)
			}
		}},
		// 5. Eligibility that programs state.
		{"a provider approved from a date is not paid for before it", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) {
				p.Approvals = map[string]billing.Approval{"p1": {From: bt.Add(time.Hour)}}
			})
			issue(t, s, "v1", "P1", 100_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records
			wantLine(t, lineOf(t, s, recs[0]), 1000, 0, "", billing.NoteProviderNotApproved)
			wantLine(t, lineOf(t, s, recs[1]), 1000, 200, "v1:200", billing.NoteSubsidized)
			ps, err := s.Programs(ctx)
			must(t, err)
			if a := ps[0].Approvals["p1"]; !a.From.Equal(bt.Add(time.Hour)) || !a.To.IsZero() || statementOf(t, s).Totals.ApprovalRecords != 1 {
				t.Errorf("approval %+v, totals %+v", a, statementOf(t, s).Totals)
			}
		}},
		{"a voucher's face is within the program's minimum and maximum", func(t *testing.T, s *Store, _ *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.VoucherMin, p.VoucherMax = 500, 10_000 })
			wantRefused(t, s.IssueVoucherAt(ctx, testVoucher("small", "P1", "E1", 499, y2028), y2026), "face_fen", "below program \"P1\"'s minimum")
			wantRefused(t, s.IssueVoucherAt(ctx, testVoucher("big", "P1", "E1", 10_001, y2028), y2026), "face_fen", "above program \"P1\"'s maximum")
			must(t, s.IssueVoucherAt(ctx, testVoucher("ok", "P1", "E1", 10_000, y2028), y2026))
		}},
		{"a program's budget stops paying when spent, for every entity", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.BudgetPerYear = 300 })
			must(t, s.PutEntity(ctx, billing.Entity{ID: "E2", Name: "Beta"}))
			must(t, s.MapTenant(ctx, "p1", "beta", "E2"))
			issue(t, s, "v1", "P1", 100_000, y2028)
			must(t, s.IssueVoucherAt(ctx, testVoucher("w1", "P1", "E2", 100_000, y2028), y2026))
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(2, bt.Add(time.Minute), "beta"), n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records
			// 20 % = 200 to E1, then 100 of E2's 200 (the budget's 300 is
			// spent), then nothing.
			wantLine(t, lineOf(t, s, recs[0]), 1000, 200, "v1:200", billing.NoteSubsidized)
			l := lineOf(t, s, recs[1])
			wantLine(t, l, 1000, 100, "w1:100", billing.NotePartial)
			wantLine(t, lineOf(t, s, recs[2]), 1000, 0, "", billing.NoteBudgetSpent)
			var granted int64
			must(t, s.queryRow(ctx, `SELECT granted_fen FROM program_budgets WHERE program_id = 'P1' AND year = 2026`).Scan(&granted))
			if l.Limit != billing.LimitBudget || granted != 300 || statementOf(t, s).Totals.BudgetRecords != 1 {
				t.Errorf("limit %q, budget counter %d, E1 totals %+v", l.Limit, granted, statementOf(t, s).Totals)
			}
			// Rejecting E1's subsidy in review gives its 200 back to the
			// budget: E2's next hour is paid 200 again.
			hold(t, s, recs[0].ID, "energy 0 mJ over the window")
			_, err := s.RejectReview(ctx, recs[0].ID, "officer", "idle GPU", bt.Add(time.Hour))
			must(t, err)
			must(t, s.queryRow(ctx, `SELECT granted_fen FROM program_budgets WHERE program_id = 'P1' AND year = 2026`).Scan(&granted))
			again := n.ingest(n.hour(2, bt.Add(3*time.Hour), "beta")).Batch.Records[0]
			if wantLine(t, lineOf(t, s, again), 1000, 200, "w1:200", billing.NoteSubsidized); granted != 100 {
				t.Errorf("budget counter after the rejection %d, want 100", granted)
			}
			// The next year has its own budget.
			next := n.ingest(n.hour(1, jan2027, "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, next), 1000, 200, "v1:200", billing.NoteSubsidized)
		}},
	}
	runRules(t, rules)
}

func piecesEqual(a, b []billing.Piece) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.Start.Equal(y.Start) || !x.End.Equal(y.End) {
			return false
		}
		x.Start, x.End, y.Start, y.End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}
