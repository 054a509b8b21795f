package billing

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// TenantKey is a provider's tenant label.
type TenantKey struct{ Provider, Tenant string }

// SubsidyKey names an entitlement carry and the yearly cap's counter: one
// program's grants to one entity in one calendar year (Year).
type SubsidyKey struct {
	Program string
	Entity  string
	Year    int
}

// SubsidyCarry is the entitlement's sub-fen remainder (in 1/10000 fen)
// and what the program granted the entity that year.
type SubsidyCarry struct {
	Remainder int64
	Granted   Fen
}

// Charge is the price and subsidy of one usage record.
type Charge struct {
	RecordID    string
	Provider    string
	Tenant      string
	Entity      string // "" when the tenant is mapped to no entity
	WindowStart time.Time
	RateCard    string // "" when unpriced
	Cost        Fen
	Subsidy     Fen // the sum of Grants
	Program     string
	Grants      []Grant // soonest-expiring voucher first
	Note        string
}

// Payable is what the tenant pays.
func (c Charge) Payable() Fen { return c.Cost - c.Subsidy }

// State is everything the engine reads for a set of usage records, as the
// store loaded it (and locked what it will change): cards in force, the
// provider's tenant mappings, the entities, programs and vouchers
// concerned, and the carries. A carry absent from the maps starts at its
// initial value. SubsidyCarries must hold every year of each (program,
// entity) whose vouchers are present: their sum is the lifetime cap's
// counter.
type State struct {
	Cards          []RateCard
	Tenants        map[TenantKey]string
	Entities       []Entity
	Programs       []Program
	Vouchers       []Voucher
	CostCarries    map[CostKey]int64
	SubsidyCarries map[SubsidyKey]SubsidyCarry
}

// Changes is what billing changed in a State: the new balances of the
// vouchers that paid and the carries that moved, to be written back.
type Changes struct {
	Vouchers       []Voucher // by id
	CostCarries    map[CostKey]int64
	SubsidyCarries map[SubsidyKey]SubsidyCarry
}

type progEntity struct{ program, entity string }

// Book applies docs/billing.md to usage records one at a time, over a
// State it owns (NewBook copies it). Pure: no I/O, no clock; the same
// State and records give the same charges.
type Book struct {
	cards    *CardIndex
	tenants  map[TenantKey]string
	entities map[string]Entity
	programs map[string]Program
	vouchers map[string][]*Voucher // by holder, soonest expiry first, then id
	cost     map[CostKey]int64
	subsidy  map[SubsidyKey]SubsidyCarry
	lifetime map[progEntity]Fen

	paid         map[string]*Voucher
	movedCost    map[CostKey]bool
	movedSubsidy map[SubsidyKey]bool
}

// NewBook builds a Book over a copy of st.
func NewBook(st State) *Book {
	b := &Book{
		cards:        NewCardIndex(st.Cards),
		tenants:      st.Tenants,
		entities:     map[string]Entity{},
		programs:     map[string]Program{},
		vouchers:     map[string][]*Voucher{},
		cost:         map[CostKey]int64{},
		subsidy:      map[SubsidyKey]SubsidyCarry{},
		lifetime:     map[progEntity]Fen{},
		paid:         map[string]*Voucher{},
		movedCost:    map[CostKey]bool{},
		movedSubsidy: map[SubsidyKey]bool{},
	}
	for _, e := range st.Entities {
		b.entities[e.ID] = e
	}
	for _, p := range st.Programs {
		b.programs[p.ID] = p
	}
	for _, v := range st.Vouchers {
		b.vouchers[v.Holder] = append(b.vouchers[v.Holder], &v)
	}
	for _, vs := range b.vouchers {
		sort.Slice(vs, func(i, j int) bool { return soonerVoucher(vs[i], vs[j]) })
	}
	for k, r := range st.CostCarries {
		b.cost[k] = r
	}
	for k, c := range st.SubsidyCarries {
		b.subsidy[k] = c
		b.lifetime[progEntity{k.Program, k.Entity}] += c.Granted
	}
	return b
}

// soonerVoucher is the order vouchers pay in: soonest expiry, then id.
func soonerVoucher(a, b *Voucher) bool {
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.Before(b.Expires)
	}
	return a.ID < b.ID
}

// Covers says whether p subsidizes usage of model at provider at t.
func (p Program) Covers(provider, model string, t time.Time) bool {
	return !t.Before(p.ValidFrom) && t.Before(p.ValidTo) &&
		slices.Contains(p.Providers, provider) &&
		(len(p.Models) == 0 || slices.Contains(p.Models, model))
}

// RatioFor is p's ratio for a GPU model: its override, or the default.
func (p Program) RatioFor(model string) BasisPoints {
	if r, ok := p.ModelRatios[model]; ok {
		return r
	}
	return p.Ratio
}

// UsableAt says whether v may pay for usage at t (its program aside).
func (v *Voucher) UsableAt(t time.Time) bool {
	return v.Status == VoucherActive && v.Balance > 0 && !v.Issued.After(t) && t.Before(v.Expires)
}

// Bill prices and subsidizes one usage record and updates the state.
// Records must come in the order they are billed (the store: window start,
// then node and seq); the carries make the sum of a month's costs exact
// whatever that order.
func (b *Book) Bill(u Usage) (Charge, error) {
	if u.GPUMillis < 0 {
		return Charge{}, fmt.Errorf("bill record %s: negative gpu_ms %d", u.RecordID, u.GPUMillis)
	}
	ch := Charge{RecordID: u.RecordID, Provider: u.Provider, Tenant: u.Tenant, WindowStart: u.WindowStart}
	entity, mapped := b.tenants[TenantKey{u.Provider, u.Tenant}]
	ch.Entity = entity

	pr, ok := b.cards.Price(u)
	if !ok {
		ch.Note = NoteUnpriced
		return ch, nil
	}
	carry, ok := b.cost[pr.Key]
	if !ok {
		carry = InitialCostCarry(pr.Den)
	}
	cost, carry, err := Cost(carry, pr.Card.PricePerHour, u.GPUMillis, pr.Num, pr.Den)
	if err != nil {
		return Charge{}, fmt.Errorf("bill record %s: cost of %d ms at %d fen/h: %w", u.RecordID, u.GPUMillis, pr.Card.PricePerHour, err)
	}
	b.cost[pr.Key] = carry
	b.movedCost[pr.Key] = true
	ch.RateCard, ch.Cost = pr.Card.ID, cost

	e, known := b.entities[entity]
	switch {
	case !mapped || !known:
		ch.Note = NoteNoEntity
		return ch, nil
	case slices.Contains(e.RelatedProviders, u.Provider):
		ch.Note = NoteRelatedParty
		return ch, nil
	}

	year := Year(u.WindowStart)
	cands := b.candidates(entity, u, year)
	if len(cands) == 0 {
		ch.Note = NoteNoVoucher
		return ch, nil
	}
	// One program per record: the soonest-expiring candidate's.
	prog := b.programs[cands[0].Program]
	sk := SubsidyKey{Program: prog.ID, Entity: entity, Year: year}
	sc, ok := b.subsidy[sk]
	if !ok {
		sc.Remainder = InitialSubsidyCarry(prog.Rounding)
	}
	ent, rem, err := Entitle(sc.Remainder, prog.RatioFor(u.Model), cost)
	if err != nil {
		return Charge{}, fmt.Errorf("bill record %s: entitlement: %w", u.RecordID, err)
	}
	grant := min(ent, b.capLeft(prog, sk, sc))
	ch.Program = prog.ID
	left := grant
	for _, v := range cands {
		if left == 0 {
			break
		}
		if v.Program != prog.ID {
			continue
		}
		take := min(left, v.Balance)
		v.Balance -= take
		left -= take
		b.paid[v.ID] = v
		ch.Grants = append(ch.Grants, Grant{Voucher: v.ID, Amount: take})
	}
	// What the program's vouchers could not cover is not owed later.
	grant -= left
	ch.Subsidy = grant
	sc.Remainder, sc.Granted = rem, sc.Granted+grant
	b.subsidy[sk] = sc
	b.movedSubsidy[sk] = true
	b.lifetime[progEntity{prog.ID, entity}] += grant
	switch {
	case ent == 0:
		// Nothing was due (the program's fraction is in the carry): not
		// "subsidized", or a statement would count a record that no
		// voucher paid for and that the provider's claim leaves out.
		ch.Note = NoteUnderOneFen
	case grant < ent:
		ch.Note = NotePartial
	default:
		ch.Note = NoteSubsidized
	}
	return ch, nil
}

// candidates are entity's vouchers that may pay for u (docs/billing.md,
// Subsidizing a record, 1), soonest-expiring first. A program whose
// yearly or lifetime cap for the entity is used up is no candidate: its
// vouchers cannot pay, like empty ones, and another program's may.
func (b *Book) candidates(entity string, u Usage, year int) []*Voucher {
	var out []*Voucher
	for _, v := range b.vouchers[entity] {
		if !v.UsableAt(u.WindowStart) {
			continue
		}
		p, ok := b.programs[v.Program]
		if !ok || !p.Covers(u.Provider, u.Model, u.WindowStart) {
			continue
		}
		sk := SubsidyKey{Program: p.ID, Entity: entity, Year: year}
		if b.capLeft(p, sk, b.subsidy[sk]) <= 0 {
			continue
		}
		out = append(out, v)
	}
	return out
}

// capLeft is what program p may still grant the entity in sk's year: the
// yearly cap less that year's grants, and the lifetime cap (if any) less
// all years' grants.
func (b *Book) capLeft(p Program, sk SubsidyKey, sc SubsidyCarry) Fen {
	left := p.CapPerYear - sc.Granted
	if p.CapLifetime > 0 {
		left = min(left, p.CapLifetime-b.lifetime[progEntity{p.ID, sk.Entity}])
	}
	return max(left, 0)
}

// Changes returns the state billing moved since NewBook.
func (b *Book) Changes() Changes {
	ch := Changes{CostCarries: map[CostKey]int64{}, SubsidyCarries: map[SubsidyKey]SubsidyCarry{}}
	for _, v := range b.paid {
		ch.Vouchers = append(ch.Vouchers, *v)
	}
	sort.Slice(ch.Vouchers, func(i, j int) bool { return ch.Vouchers[i].ID < ch.Vouchers[j].ID })
	for k := range b.movedCost {
		ch.CostCarries[k] = b.cost[k]
	}
	for k := range b.movedSubsidy {
		ch.SubsidyCarries[k] = b.subsidy[k]
	}
	return ch
}

// SortedCostKeys returns keys in the order rows are locked (provider,
// tenant, card, slice, month), so that concurrent transactions lock them
// in one order and cannot deadlock.
func SortedCostKeys(keys map[CostKey]bool) []CostKey {
	out := make([]CostKey, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return costKeyLess(out[i], out[j]) })
	return out
}

func costKeyLess(a, b CostKey) bool {
	if c := strings.Compare(a.Provider, b.Provider); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.RateCard, b.RateCard); c != 0 {
		return c < 0
	}
	if a.SliceDen != b.SliceDen {
		return a.SliceDen < b.SliceDen
	}
	return a.Month < b.Month
}
