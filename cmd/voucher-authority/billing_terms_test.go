package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// termsProgram states every optional term of a program file.
const termsProgram = `id: sh
issuer: Example Bureau
name: Example voucher
ratio_percent: 50
cap_per_entity_year_yuan: 1000000
providers: [cloud-a, cloud-b]
provider_approvals:
  cloud-b: {from: 2026-07-01, to: 2027-01-01}
category_terms:
  early_stage: {ratio_percent: 60}
  micro: {ratio_percent: 100, cap_per_entity_year_yuan: 500000}
voucher_term_months: 12
voucher_term_from: first_use
voucher_min_yuan: 10000
voucher_max_yuan: 1000000
budget_per_year_yuan: 600000000
valid_from: 2026-01-01
valid_to: 2028-01-01
rounding: half_up
settlement: point_of_sale
`

func TestParseProgramTerms(t *testing.T) {
	p, _ := mustParseProgram(t, termsProgram)
	if err := billing.ValidateProgram(p); err != nil {
		t.Fatalf("the program is invalid: %v", err)
	}
	a := p.Approvals["cloud-b"]
	if a.From.IsZero() || !a.To.Equal(p.ValidFrom.AddDate(1, 0, 0)) || len(p.Approvals) != 1 {
		t.Errorf("approvals %+v", p.Approvals)
	}
	if p.CategoryTerms["early_stage"] != (billing.CategoryTerm{Ratio: 6000}) ||
		p.CategoryTerms["micro"] != (billing.CategoryTerm{Ratio: 10000, CapPerYear: 50_000_000}) {
		t.Errorf("category terms %+v", p.CategoryTerms)
	}
	// 600 M CNY is 60 000 000 000 fen.
	if p.VoucherTermMonths != 12 || p.TermFrom != billing.TermFromFirstUse || p.VoucherMin != 1_000_000 ||
		p.VoucherMax != 100_000_000 || p.BudgetPerYear != 60_000_000_000 {
		t.Errorf("program %+v", p)
	}
}

// The rules' refusals of nested terms land on their lines, under the
// file's names.
func TestProgramTermErrorsNameTheLine(t *testing.T) {
	src := strings.NewReplacer("early_stage: {ratio_percent: 60}", "early_stage: {ratio_percent: 160}",
		"cloud-b: {from", "cloud-c: {from", "voucher_min_yuan: 10000", "voucher_min_yuan: 2000000",
		"voucher_term_from: first_use", "voucher_term_from: signing").Replace(termsProgram)
	wantAll(t, programRuleErrors(t, src),
		"p.yaml:8: provider_approvals.cloud-c: \"cloud-c\" is not in providers",
		"p.yaml:10: category_terms.early_stage.ratio_percent: 16000 bp",
		"p.yaml:13: voucher_term_from: \"signing\"",
		"p.yaml:15: voucher_max_yuan: 100000000 fen is below voucher_min_fen 200000000",
	)
	if _, _, err := parseProgram("p.yaml", []byte(strings.Replace(termsProgram, "ratio_percent: 60", "ratio_percent: sixty", 1))); err == nil ||
		!strings.Contains(err.Error(), "p.yaml:10: category_terms.early_stage.ratio_percent") {
		t.Errorf("a bad category ratio: %v", err)
	}
}

// TestProgramShowAndCategories: program show prints every term, entity put
// keeps categories, and a voucher outside the term or the face bounds is
// refused with the field named (SQLite; the store's cases run on both).
func TestProgramShowAndCategories(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "authority.db")
	program := filepath.Join(dir, "sh.yaml")
	writeFile(t, program, strings.Replace(termsProgram, "voucher_term_from: first_use", "voucher_term_from: issue", 1))
	runSteps(t, []step{
		{"program", []string{"program", "add", "--db", db, "--file", program}, 0, "added program sh", ""},
		{"show", []string{"program", "show", "--db", db, "--id", "sh"}, 0, "cloud-b (2026-07-01 00:00 to 2027-01-01 00:00)", ""},
		{"show categories", []string{"program", "show", "--db", db, "--id", "sh"}, 0, "100% instead of the ratio (model adjustments on top), at most 500000.00 CNY a year", ""},
		{"show budget and term", []string{"program", "show", "--db", db, "--id", "sh"}, 0, "600000000.00 CNY a year", ""},
		{"show term", []string{"program", "show", "--db", db, "--id", "sh"}, 0, "12 months from issue", ""},
		{"show json", []string{"program", "show", "--db", db, "--id", "sh", "--format", "json"}, 0, `"budget_per_year_fen": 60000000000`, ""},
		{"show unknown", []string{"program", "show", "--db", db, "--id", "nope"}, 1, "", "nope"},
		{"entity with categories", []string{"entity", "put", "--db", db, "--id", "acme", "--name", "Acme",
			"--category", "early_stage=2026-01-01..2027-01-01", "--category", "micro=2026-03-01.."}, 0, "early_stage from 2026-01-01 00:00 to 2027-01-01 00:00", ""},
		{"entity list", []string{"entity", "list", "--db", db}, 0, "micro 2026-03-01 00:00..", ""},
		{"bad category", []string{"entity", "put", "--db", db, "--id", "acme", "--name", "Acme", "--category", "micro"}, exitUsage, "", "NAME=FROM..TO"},
		{"voucher past the term", []string{"voucher", "issue", "--db", db, "--id", "v24", "--program", "sh", "--holder", "acme",
			"--face-yuan", "20000", "--issued", "2026-12-01", "--expires", "2028-01-01"}, exitUsage, "", "expires"},
		{"voucher under the minimum", []string{"voucher", "issue", "--db", db, "--id", "vs", "--program", "sh", "--holder", "acme",
			"--face-yuan", "9999.99", "--issued", "2026-12-01", "--expires", "2027-12-01"}, exitUsage, "", "face_fen: 999999 fen is below"},
	})
}
