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

// Settlement modes of a program (informational, on statements).
const (
	SettleAfter       = "after_settlement"
	SettlePointOfSale = "point_of_sale"
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
)

// Entity is a voucher holder.
type Entity struct {
	ID               string   `json:"id" yaml:"id"`
	Name             string   `json:"name" yaml:"name"`
	RelatedProviders []string `json:"related_providers,omitempty" yaml:"related_providers"`
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

// Grant is what one voucher paid toward one record.
type Grant struct {
	Voucher string `json:"voucher"`
	Amount  Fen    `json:"amount_fen"`
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
	Records int    `json:"records"`
	Amount  Fen    `json:"amount_fen"`
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
