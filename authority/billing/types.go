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
	NoteNoEntity   = "no_entity"
	NoteNoVoucher  = "no_voucher"
	NoteUnpriced   = "unpriced"
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
	Subsidy      Fen       `json:"subsidy_fen"`
	Payable      Fen       `json:"payable_fen"`
	Program      string    `json:"program,omitempty"`
	Grants       []Grant   `json:"grants,omitempty"`
	Note         string    `json:"note"`
}

// Totals sums lines.
type Totals struct {
	Records   int   `json:"records"`
	GPUMillis int64 `json:"gpu_ms"`
	Cost      Fen   `json:"cost_fen"`
	Subsidy   Fen   `json:"subsidy_fen"`
	Payable   Fen   `json:"payable_fen"`
	Unpriced  int   `json:"unpriced_records"`
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

// ClaimTotal is what a provider claims from one program through one voucher.
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
