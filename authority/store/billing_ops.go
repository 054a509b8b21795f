package store

import (
	"context"
	"errors"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// The operator's billing operations (docs/billing.md). Every Add/Issue
// validates with authority/billing and returns an error wrapping
// ErrInvalidBilling (bad values; the message names the field) or
// ErrBillingConflict (an id that exists, an overlapping rate card, a
// missing program/entity) so callers can answer 400/409.
//
// Contract stubs: implemented by the billing work.

var errBillingTODO = errors.New("billing: not implemented yet")

// PutEntity creates or updates an entity (name, related providers).
func (s *Store) PutEntity(ctx context.Context, e billing.Entity) error { return errBillingTODO }

// Entities lists entities by id.
func (s *Store) Entities(ctx context.Context) ([]billing.Entity, error) { return nil, errBillingTODO }

// MapTenant says which entity a provider's tenant label is (replacing a
// previous mapping; records already billed keep theirs).
func (s *Store) MapTenant(ctx context.Context, provider, tenant, entityID string) error {
	return errBillingTODO
}

// AddProgram creates a program. Programs are immutable once created.
func (s *Store) AddProgram(ctx context.Context, p billing.Program) error { return errBillingTODO }

// Programs lists programs by id.
func (s *Store) Programs(ctx context.Context) ([]billing.Program, error) { return nil, errBillingTODO }

// IssueVoucher creates a voucher; Balance is set to Face and Status to
// active. An already-expired voucher is refused.
func (s *Store) IssueVoucher(ctx context.Context, v billing.Voucher) error { return errBillingTODO }

// SetVoucherStatus suspends, reactivates or revokes a voucher.
func (s *Store) SetVoucherStatus(ctx context.Context, id, status string) error { return errBillingTODO }

// Vouchers lists vouchers, of one entity if entityID is not "".
func (s *Store) Vouchers(ctx context.Context, entityID string) ([]billing.Voucher, error) {
	return nil, errBillingTODO
}

// AddRateCard creates a rate card; one overlapping a card of the same
// (provider, model, profile) is refused, naming that card.
func (s *Store) AddRateCard(ctx context.Context, c billing.RateCard) error { return errBillingTODO }

// EndRateCard sets an open card's end (to introduce a new price at at).
func (s *Store) EndRateCard(ctx context.Context, id string, at time.Time) error {
	return errBillingTODO
}

// RateCards lists rate cards, of one provider if provider is not "".
func (s *Store) RateCards(ctx context.Context, provider string) ([]billing.RateCard, error) {
	return nil, errBillingTODO
}

// Statement is an entity's statement for [from, to).
func (s *Store) Statement(ctx context.Context, entityID string, from, to time.Time) (billing.Statement, error) {
	return billing.Statement{}, errBillingTODO
}

// Claim is a provider's claim for [from, to).
func (s *Store) Claim(ctx context.Context, provider string, from, to time.Time) (billing.Claim, error) {
	return billing.Claim{}, errBillingTODO
}
