package billing

import (
	"testing"
	"time"
)

// The terms a program states are validated with the field named.
func TestValidateProgramTerms(t *testing.T) {
	p := goodProgram()
	p.Approvals = map[string]Approval{"p1": {From: jan1.AddDate(0, 6, 0)}, "p9": {}}
	p.CategoryTerms = map[string]CategoryTerm{"early": {Ratio: 12000}, "a b": {Ratio: 100, CapPerYear: -1}}
	p.VoucherTermMonths, p.TermFrom = 12, "signing"
	p.VoucherMin, p.VoucherMax, p.BudgetPerYear = 500, 100, -1
	wantFields(t, ValidateProgram(p), "provider_approvals[p9]", "category_terms[a b]", "category_terms[a b].cap_per_entity_year_fen",
		"category_terms[early].ratio_bp", "voucher_term_from", "voucher_max_fen", "budget_per_year_fen")
	p = goodProgram()
	p.TermFrom = TermFromIssue
	wantFields(t, ValidateProgram(p), "voucher_term_from")
}

func TestValidateEntityCategories(t *testing.T) {
	e := Entity{ID: "E1", Categories: []Category{{Name: "early", From: jan1, To: nextJan1},
		{Name: "early", From: jan1.AddDate(0, 6, 0)}, {Name: "micro", From: nextJan1, To: jan1}}}
	wantFields(t, ValidateEntity(e), "categories[1]", "categories[2].to")
}

// A term from issue bounds expiry at issue; a term from first use does
// not (it starts when the voucher first pays).
func TestCheckIssueTerm(t *testing.T) {
	p := goodProgram()
	p.VoucherTermMonths, p.TermFrom = 3, TermFromIssue
	v := goodVoucher() // six months
	wantFields(t, CheckIssue(v, p, jan1), "expires")
	v.Expires = jan1.AddDate(0, 3, 0)
	wantFields(t, CheckIssue(v, p, jan1))
	p.TermFrom = TermFromFirstUse
	v.Expires = jan1.AddDate(0, 6, 0)
	wantFields(t, CheckIssue(v, p, jan1))
}

// Terms: a category's ratio replaces the base, the model's difference
// applies on top, held to 0-100 %; the highest category ratio wins.
func TestTermsByCategory(t *testing.T) {
	p := goodProgram() // 20 %, Ascend 30 %
	p.CategoryTerms = map[string]CategoryTerm{"early": {Ratio: 9500, CapPerYear: 7}, "small": {Ratio: 4000}}
	e := Entity{ID: "E1", Categories: []Category{{Name: "small", From: jan1}, {Name: "early", From: jan1.AddDate(0, 6, 0)}}}
	at := func(months int) time.Time { return jan1.AddDate(0, months, 0) }
	for _, tc := range []struct {
		model   string
		t       time.Time
		ratio   BasisPoints
		capYear Fen
	}{
		{"H100", at(1), 4000, 200_000_000},        // small: 40 %
		{"Ascend 910B", at(1), 5000, 200_000_000}, // 40 + (30 − 20)
		{"Ascend 910B", at(7), 10000, 7},          // early: 95 + 10, held to 100 %; its cap
		{"H100", at(-1), 2000, 200_000_000},       // before any category
	} {
		if r, c := p.Terms(e, tc.model, tc.t); r != tc.ratio || c != tc.capYear {
			t.Errorf("%s at %s: %d bp, cap %d; want %d, %d", tc.model, tc.t, r, c, tc.ratio, tc.capYear)
		}
	}
}
