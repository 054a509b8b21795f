// Package billing is the voucher rulebook of docs/billing.md as pure
// functions: validation of programs, vouchers and rate cards, pricing with
// carried remainders, the subsidy rule, and statements as JSON and CSV.
// It touches no database: authority/store loads the state, calls these,
// and writes the result in the ingest transaction.
package billing

import (
	"time"

	"github.com/gpumeter/gpumeter/authority/coverage"
)

// Fen is an amount of money in fen (0.01 CNY). Never a float.
type Fen int64

// BasisPoints is a ratio: 10000 is 100%.
type BasisPoints int64

// Rounding rules of a program.
const (
	RoundHalfUp   = "half_up"
	RoundTruncate = "truncate"
)

// Settlement modes of a program (docs/billing.md, "Settlement"): at the
// point of sale the tenant pays the provider only its share and the
// provider claims the subsidy from the issuer; after settlement the tenant
// pays the provider the whole cost and the issuer reimburses the tenant.
const (
	SettleAfter       = "after_settlement"
	SettlePointOfSale = "point_of_sale"
)

// Where a program's voucher term runs from (Program.TermFrom).
const (
	TermFromIssue    = "issue"
	TermFromFirstUse = "first_use"
)

// What cut a partial subsidy (Charge.Limit, Line.Limit).
const (
	LimitBalance  = "balance"        // the program's vouchers ran dry
	LimitYearCap  = "year_cap"       // the entity's yearly cap
	LimitLifetime = "lifetime_cap"   // the entity's lifetime cap
	LimitBudget   = "program_budget" // the program's budget for the year
)

// Voucher statuses.
const (
	VoucherActive    = "active"
	VoucherSuspended = "suspended"
	VoucherRevoked   = "revoked"
)

// Charge notes.
const (
	NoteSubsidized = "subsidized"
	NotePartial    = "partial"
	// NoteUnderOneFen: a program covers the record, but its share of the
	// cost is under one fen (a zero cost, or a fraction carried on to the
	// entity's next record), so no voucher pays anything for it. Neither
	// a statement's subsidized lines nor a claim count it: both count the
	// records a voucher paid for.
	NoteUnderOneFen = "under_one_fen"
	NoteNoEntity    = "no_entity"
	NoteNoVoucher   = "no_voucher"
	NoteUnpriced    = "unpriced"
	// NoteRelatedParty: the entity is a related party of the provider, so
	// no program subsidizes this usage.
	NoteRelatedParty = "related_party"
	// NoteProviderNotApproved: a voucher of the entity would pay, but its
	// program lists the provider only for other dates.
	NoteProviderNotApproved = "provider_not_approved"
	// NoteBudgetSpent: a voucher of the entity would pay, but its program's
	// budget for the year is spent.
	NoteBudgetSpent = "budget_spent"
)

// Entity is a voucher holder.
type Entity struct {
	ID               string   `json:"id" yaml:"id"`
	Name             string   `json:"name" yaml:"name"`
	RelatedProviders []string `json:"related_providers,omitempty" yaml:"related_providers"`
	// Categories are the kinds of firm the entity is, each over a period
	// (early_stage, small, university, ...): a program's CategoryTerms
	// name them.
	Categories []Category `json:"categories,omitempty" yaml:"categories"`
}

// Category is one kind of firm an entity is over [From, To) (To zero:
// open).
type Category struct {
	Name string    `json:"name"`
	From time.Time `json:"from"`
	To   time.Time `json:"to,omitzero"`
}

// In says whether c holds at t.
func (c Category) In(t time.Time) bool {
	return !t.Before(c.From) && (c.To.IsZero() || t.Before(c.To))
}

// CategoryTerm is what a program grants an entity of a category: Ratio
// replaces the program's ratio (model adjustments apply on top), and
// CapPerYear, when above 0, replaces its yearly cap.
type CategoryTerm struct {
	Ratio      BasisPoints `json:"ratio_bp"`
	CapPerYear Fen         `json:"cap_per_entity_year_fen,omitempty"`
}

// Approval is the period a program approves a provider over: [From, To),
// either zero for the program's own bound.
type Approval struct {
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// Program is a voucher scheme.
type Program struct {
	ID     string      `json:"id" yaml:"id"`
	Issuer string      `json:"issuer" yaml:"issuer"`
	Name   string      `json:"name" yaml:"name"`
	Ratio  BasisPoints `json:"ratio_bp" yaml:"ratio_bp"`
	// ModelRatios overrides Ratio for GPU models (a model class).
	ModelRatios map[string]BasisPoints `json:"model_ratios_bp,omitempty" yaml:"model_ratios_bp"`
	CapPerYear  Fen                    `json:"cap_per_entity_year_fen" yaml:"cap_per_entity_year_fen"`
	// CapLifetime is 0 for none.
	CapLifetime Fen       `json:"cap_per_entity_lifetime_fen,omitempty" yaml:"cap_per_entity_lifetime_fen"`
	Providers   []string  `json:"providers" yaml:"providers"`
	Models      []string  `json:"models,omitempty" yaml:"models"` // empty: all
	ValidFrom   time.Time `json:"valid_from" yaml:"valid_from"`
	ValidTo     time.Time `json:"valid_to" yaml:"valid_to"` // exclusive
	Rounding    string    `json:"rounding" yaml:"rounding"`
	Settlement  string    `json:"settlement" yaml:"settlement"`
	// Approvals bound a listed provider's approval to a period (a provider
	// listed without one is approved for the program's whole validity).
	Approvals map[string]Approval `json:"provider_approvals,omitempty"`
	// CategoryTerms are the ratio and cap by category of entity.
	CategoryTerms map[string]CategoryTerm `json:"category_terms,omitempty"`
	// VoucherTermMonths is how long a voucher is valid (0: up to the
	// program's end), counted from issue or from first use (TermFrom).
	VoucherTermMonths int    `json:"voucher_term_months,omitempty"`
	TermFrom          string `json:"voucher_term_from,omitempty"`
	// VoucherMin and VoucherMax bound a voucher's face (0: no bound).
	VoucherMin Fen `json:"voucher_min_fen,omitempty"`
	VoucherMax Fen `json:"voucher_max_fen,omitempty"`
	// BudgetPerYear is what the program pays all entities together in a
	// calendar year (0: no budget); spent, it pays nothing more that year.
	BudgetPerYear Fen `json:"budget_per_year_fen,omitempty"`
}

// Voucher is a program's grant to one entity.
type Voucher struct {
	ID      string    `json:"id"`
	Program string    `json:"program"`
	Holder  string    `json:"holder"` // entity id; fixed at issue
	Face    Fen       `json:"face_fen"`
	Balance Fen       `json:"balance_fen"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"` // exclusive
	Status  string    `json:"status"`
	// FirstUse is when the voucher first paid (zero: never). A program
	// whose term runs from first use sets Expires then.
	FirstUse time.Time `json:"first_use,omitzero"`
}

// RateCard is a provider's price for a GPU model and MIG profile.
type RateCard struct {
	ID           string    `json:"id"`
	Provider     string    `json:"provider"`
	Model        string    `json:"model"`
	MIGProfile   string    `json:"mig_profile,omitempty"` // "": the whole GPU
	PricePerHour Fen       `json:"price_fen_per_hour"`
	ValidFrom    time.Time `json:"valid_from"`
	ValidTo      time.Time `json:"valid_to,omitempty"` // exclusive; zero: open
}

// Grant is what one voucher (of Program) paid toward one record.
type Grant struct {
	Voucher string `json:"voucher"`
	Program string `json:"program,omitempty"`
	Amount  Fen    `json:"amount_fen"`
}

// Piece is the part of a record's window between two boundaries of the
// rules (a voucher's expiry, a rate card's end, ...): a record that
// straddles one is billed piece by piece (docs/billing.md, "Splitting a
// record").
type Piece struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	GPUMillis int64     `json:"gpu_ms"`
	RateCard  string    `json:"rate_card,omitempty"`
	Cost      Fen       `json:"cost_fen"`
	Subsidy   Fen       `json:"subsidy_fen"`
	Program   string    `json:"program,omitempty"`
	Note      string    `json:"note"`
	Limit     string    `json:"limit,omitempty"`
}

// Line is one billed usage record on a statement or claim.
type Line struct {
	RecordID     string    `json:"record_id"`
	Node         string    `json:"node"`
	Provider     string    `json:"provider"`
	Tenant       string    `json:"tenant"`
	Entity       string    `json:"entity,omitempty"`
	GPUUUID      string    `json:"gpu_uuid"`
	Model        string    `json:"model"`
	MIGProfile   string    `json:"mig_profile,omitempty"`
	WindowStart  time.Time `json:"window_start"`
	WindowEnd    time.Time `json:"window_end"`
	GPUMillis    int64     `json:"gpu_ms"`
	RateCard     string    `json:"rate_card,omitempty"`
	PricePerHour Fen       `json:"price_fen_per_hour"`
	Cost         Fen       `json:"cost_fen"`
	// Subsidy is what the program pays: the grants, when the line's
	// review state is paid (ReviewNone or ReviewApproved); 0 otherwise.
	Subsidy Fen `json:"subsidy_fen"`
	// Held is the subsidy held for review (ReviewHeld): its grants were
	// taken, but neither the provider may claim it nor the tenant owes it
	// yet. 0 in any other state; a rejected line has no grants left.
	Held Fen `json:"held_subsidy_fen"`
	// Payable is what the tenant owes: Cost - Subsidy - Held.
	Payable Fen     `json:"payable_fen"`
	Program string  `json:"program,omitempty"`
	Grants  []Grant `json:"grants,omitempty"`
	Note    string  `json:"note"`
	// Limit is what cut a partial subsidy (LimitBalance, LimitYearCap,
	// LimitLifetime, LimitBudget); "" otherwise.
	Limit string `json:"limit,omitempty"`
	// Settlement is the paying program's (SettlePointOfSale or
	// SettleAfter); "" when no program paid.
	Settlement string `json:"settlement,omitempty"`
	// TenantPaysProvider is what the tenant pays the provider for the
	// usage: at the point of sale Payable, after settlement the whole Cost.
	TenantPaysProvider Fen `json:"tenant_pays_provider_fen"`
	// ProviderClaims is what the provider claims from the issuer (point of
	// sale: the paid Subsidy); Reimbursed what the issuer pays the tenant
	// back (after settlement: the paid Subsidy).
	ProviderClaims Fen `json:"provider_claims_fen"`
	Reimbursed     Fen `json:"reimbursed_fen"`
	// Pieces are the parts of a record split at a boundary (two or more);
	// none when it was billed whole.
	Pieces []Piece `json:"pieces,omitempty"`
	// Review is the charge's review state (ReviewNone, ReviewHeld,
	// ReviewApproved, ReviewRejected).
	Review string `json:"review"`
}

// Totals sums lines: Cost = Subsidy (paid) + Held + Payable.
type Totals struct {
	Records   int   `json:"records"`
	GPUMillis int64 `json:"gpu_ms"`
	Cost      Fen   `json:"cost_fen"`
	Subsidy   Fen   `json:"subsidy_fen"`      // paid: claimable
	Held      Fen   `json:"held_subsidy_fen"` // waiting for review
	Payable   Fen   `json:"payable_fen"`
	Unpriced  int   `json:"unpriced_records"`
	// HeldRecords and RejectedRecords count the lines in review states
	// ReviewHeld and ReviewRejected.
	HeldRecords     int `json:"held_records"`
	RejectedRecords int `json:"rejected_records"`
	// Settlement: sums of the lines' fields of the same names.
	TenantPaysProvider Fen `json:"tenant_pays_provider_fen"`
	ProviderClaims     Fen `json:"provider_claims_fen"`
	Reimbursed         Fen `json:"reimbursed_fen"`
	// The program terms that bit: lines billed in pieces; lines a cap
	// (yearly or lifetime) cut; lines the program's budget cut or refused;
	// lines refused because the provider was not approved then.
	SplitRecords    int `json:"split_records"`
	CapRecords      int `json:"cap_records"`
	BudgetRecords   int `json:"budget_records"`
	ApprovalRecords int `json:"provider_not_approved_records"`
}

// Statement is an entity's bill for [From, To).
type Statement struct {
	Entity string    `json:"entity"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Lines  []Line    `json:"lines"`
	Totals Totals    `json:"totals"`
	// Coverage is that of the GPUs the lines ran on.
	Coverage []coverage.GPU `json:"coverage"`
}

// ClaimTotal is what a provider claims from one program through one
// voucher: the grants of paid lines only.
type ClaimTotal struct {
	Program string `json:"program"`
	Voucher string `json:"voucher"`
	// Settlement says who the issuer pays: the provider (point_of_sale)
	// or the tenant (after_settlement, listed for reconciliation).
	Settlement string `json:"settlement,omitempty"`
	Records    int    `json:"records"`
	Amount     Fen    `json:"amount_fen"`
}

// Claim is a provider's claim for [From, To).
type Claim struct {
	Provider  string       `json:"provider"`
	From      time.Time    `json:"from"`
	To        time.Time    `json:"to"`
	Lines     []Line       `json:"lines"`
	ByVoucher []ClaimTotal `json:"by_voucher"`
	Totals    Totals       `json:"totals"`
	// Coverage is that of the provider's GPUs.
	Coverage []coverage.GPU `json:"coverage"`
}
