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
	Limit       string  // what cut a partial subsidy
	Settlement  string  // the paying program's
	Pieces      []Piece // two or more when the record was split
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
	// Budgets is what each program granted all entities in a year (the
	// program's budget counter), for the programs with a budget.
	Budgets map[BudgetKey]Fen
}

// BudgetKey names a program's budget counter for a calendar year.
type BudgetKey struct {
	Program string
	Year    int
}

// Changes is what billing changed in a State: the new balances of the
// vouchers that paid and the carries that moved, to be written back.
type Changes struct {
	Vouchers       []Voucher // by id
	CostCarries    map[CostKey]int64
	SubsidyCarries map[SubsidyKey]SubsidyCarry
	Budgets        map[BudgetKey]Fen
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
	budget   map[BudgetKey]Fen

	paid         map[string]*Voucher
	movedCost    map[CostKey]bool
	movedSubsidy map[SubsidyKey]bool
	movedBudget  map[BudgetKey]bool
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
		budget:       map[BudgetKey]Fen{},
		paid:         map[string]*Voucher{},
		movedCost:    map[CostKey]bool{},
		movedSubsidy: map[SubsidyKey]bool{},
		movedBudget:  map[BudgetKey]bool{},
	}
	for k, f := range st.Budgets {
		b.budget[k] = f
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

// Approved says whether p lists provider and approves it at t (a
// provider without an approval period is approved whenever p is valid).
func (p Program) Approved(provider string, t time.Time) bool {
	if !slices.Contains(p.Providers, provider) {
		return false
	}
	a, ok := p.Approvals[provider]
	return !ok || (a.From.IsZero() || !t.Before(a.From)) && (a.To.IsZero() || t.Before(a.To))
}

// Covers says whether p subsidizes usage of model at provider at t.
func (p Program) Covers(provider, model string, t time.Time) bool {
	return !t.Before(p.ValidFrom) && t.Before(p.ValidTo) && p.Approved(provider, t) &&
		(len(p.Models) == 0 || slices.Contains(p.Models, model))
}

// RatioFor is p's ratio for a GPU model: its override, or the default.
func (p Program) RatioFor(model string) BasisPoints {
	if r, ok := p.ModelRatios[model]; ok {
		return r
	}
	return p.Ratio
}

// Category is the category term p grants e at t: of e's categories in
// force at t that p names, the one with the highest ratio (ties: the
// name first in byte order). "" and false when none applies.
func (p Program) Category(e Entity, t time.Time) (string, CategoryTerm, bool) {
	var (
		name string
		best CategoryTerm
		ok   bool
	)
	for _, c := range e.Categories {
		term, named := p.CategoryTerms[c.Name]
		if !named || !c.In(t) {
			continue
		}
		if !ok || term.Ratio > best.Ratio || term.Ratio == best.Ratio && c.Name < name {
			name, best, ok = c.Name, term, true
		}
	}
	return name, best, ok
}

// Terms are the ratio and yearly cap p applies to usage of model by e at
// t (docs/billing.md, "Ratios and caps by category"): a category term
// replaces the base ratio and, when it sets one, the yearly cap; a model
// override applies on top as its difference from the base ratio, the sum
// held to 0-100%. Without a category term the override is the ratio.
func (p Program) Terms(e Entity, model string, t time.Time) (BasisPoints, Fen) {
	_, term, ok := p.Category(e, t)
	if !ok {
		return p.RatioFor(model), p.CapPerYear
	}
	r := term.Ratio + p.RatioFor(model) - p.Ratio
	capYear := p.CapPerYear
	if term.CapPerYear > 0 {
		capYear = term.CapPerYear
	}
	return min(max(r, 0), bpDen), capYear
}

// UsableAt says whether v may pay for usage at t (its program aside).
func (v *Voucher) UsableAt(t time.Time) bool {
	return v.Status == VoucherActive && v.Balance > 0 && !v.Issued.After(t) && t.Before(v.Expires)
}

// AddMonths is t plus n calendar months in China Standard Time, the
// programs' calendar (a 12-month term from 2026-03-15 ends 2027-03-15).
func AddMonths(t time.Time, n int) time.Time { return t.In(cst).AddDate(0, n, 0).UTC() }

// BillsFirst says whether record a, at chain sequence aSeq, is billed before
// record b of the same batch, at bSeq: by window start, then by sequence.
// The store bills a batch in this order and the audit replays it in the
// same, so both come to the same carries and voucher balances.
func BillsFirst(a Usage, aSeq uint64, b Usage, bSeq uint64) bool {
	if !a.WindowStart.Equal(b.WindowStart) {
		return a.WindowStart.Before(b.WindowStart)
	}
	return aSeq < bSeq
}

// Bill prices and subsidizes one usage record and updates the state.
// Records must come in the order they are billed (the store: window start,
// then node and seq); the carries make the sum of a month's costs exact
// whatever that order. A record whose window straddles a boundary of the
// rules is billed in pieces (Split); the charge sums them.
func (b *Book) Bill(u Usage) (Charge, error) {
	if u.GPUMillis < 0 {
		return Charge{}, fmt.Errorf("bill record %s: negative gpu_ms %d", u.RecordID, u.GPUMillis)
	}
	ch := Charge{RecordID: u.RecordID, Provider: u.Provider, Tenant: u.Tenant, WindowStart: u.WindowStart}
	entity, mapped := b.tenants[TenantKey{u.Provider, u.Tenant}]
	ch.Entity = entity
	parts := Split(u, b.boundaries(u, entity))
	pieces := make([]Piece, 0, len(parts))
	var grants []Grant
	for _, pu := range parts {
		pc, gs, err := b.billPiece(pu, entity, mapped)
		if err != nil {
			return Charge{}, fmt.Errorf("bill record %s: %w", u.RecordID, err)
		}
		pieces = append(pieces, pc)
		grants = mergeGrants(grants, gs)
	}
	ch.Grants = grants
	ch.Note = pieces[0].Note
	paid, partial := false, false
	for _, pc := range pieces {
		ch.Cost += pc.Cost
		ch.Subsidy += pc.Subsidy
		if ch.RateCard == "" {
			ch.RateCard = pc.RateCard
		}
		if ch.Program == "" {
			ch.Program = pc.Program
		}
		if pc.Subsidy > 0 {
			paid = true
		}
		if pc.Note == NotePartial && !partial {
			partial, ch.Limit = true, pc.Limit
		}
		if ch.Note == NoteUnpriced && pc.Note != NoteUnpriced {
			ch.Note = pc.Note
		}
	}
	switch {
	case partial:
		ch.Note = NotePartial
	case paid:
		ch.Note = NoteSubsidized
	}
	if ch.Program != "" {
		ch.Settlement = b.programs[ch.Program].Settlement
	}
	if len(pieces) > 1 {
		ch.Pieces = pieces
	}
	return ch, nil
}

// mergeGrants adds gs to a record's grants: one per voucher, in the order
// the vouchers first paid.
func mergeGrants(to, gs []Grant) []Grant {
next:
	for _, g := range gs {
		for i := range to {
			if to[i].Voucher == g.Voucher {
				to[i].Amount += g.Amount
				continue next
			}
		}
		to = append(to, g)
	}
	return to
}

// boundaries are the instants where the rules that may bill u change: the
// start and end of its rate cards (and of the whole-GPU cards a MIG record
// falls back to), of the entity's vouchers that may still pay and of
// their programs and provider approvals, and of the entity's categories.
// Split keeps those inside u's window.
func (b *Book) boundaries(u Usage, entity string) []time.Time {
	var ts []time.Time
	ts = b.cards.bounds(u, ts)
	for _, v := range b.vouchers[entity] {
		if v.Status != VoucherActive || v.Balance <= 0 {
			continue
		}
		p := b.programs[v.Program]
		ts = append(ts, v.Issued, v.Expires, p.ValidFrom, p.ValidTo)
		if a, ok := p.Approvals[u.Provider]; ok {
			ts = append(ts, a.From, a.To)
		}
	}
	for _, c := range b.entities[entity].Categories {
		ts = append(ts, c.From, c.To)
	}
	return ts
}

// Split cuts u at the instants of cuts strictly inside its window
// [WindowStart, WindowEnd), to the millisecond; a record without a window
// end, or with no cut inside, is one piece. A piece's GPU time is its
// share of the window's wall time, by the running floor: piece i of a
// record of G GPU-ms over W ms ending at offset e_i gets
// floor(G×e_i/W) − floor(G×e_(i−1)/W), so the pieces sum to G exactly.
func Split(u Usage, cuts []time.Time) []Usage {
	if !u.WindowEnd.After(u.WindowStart) {
		return []Usage{u}
	}
	var in []time.Time
	for _, t := range cuts {
		t = t.Truncate(time.Millisecond)
		if t.After(u.WindowStart) && t.Before(u.WindowEnd) {
			in = append(in, t)
		}
	}
	if len(in) == 0 {
		return []Usage{u}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Before(in[j]) })
	in = slices.CompactFunc(in, func(a, b time.Time) bool { return a.Equal(b) })
	wall := u.WindowEnd.Sub(u.WindowStart).Milliseconds()
	out := make([]Usage, 0, len(in)+1)
	start, done := u.WindowStart, int64(0)
	for _, end := range append(in, u.WindowEnd) {
		upto, _, err := carryDiv(0, u.GPUMillis, end.Sub(u.WindowStart).Milliseconds(), 1, wall)
		if err != nil {
			return []Usage{u} // absurd lengths: billed whole
		}
		pu := u
		pu.WindowStart, pu.WindowEnd, pu.GPUMillis = start, end, upto-done
		out = append(out, pu)
		start, done = end, upto
	}
	return out
}

// billPiece prices and subsidizes one piece of a record (a whole record
// when it is not split), by the rules in force at its start.
func (b *Book) billPiece(u Usage, entity string, mapped bool) (Piece, []Grant, error) {
	pc := Piece{Start: u.WindowStart, End: u.WindowEnd, GPUMillis: u.GPUMillis}
	pr, ok := b.cards.Price(u)
	if !ok {
		pc.Note = NoteUnpriced
		return pc, nil, nil
	}
	carry, ok := b.cost[pr.Key]
	if !ok {
		carry = InitialCostCarry(pr.Den)
	}
	cost, carry, err := Cost(carry, pr.Card.PricePerHour, u.GPUMillis, pr.Num, pr.Den)
	if err != nil {
		return pc, nil, fmt.Errorf("cost of %d ms at %d fen/h: %w", u.GPUMillis, pr.Card.PricePerHour, err)
	}
	b.cost[pr.Key] = carry
	b.movedCost[pr.Key] = true
	pc.RateCard, pc.Cost = pr.Card.ID, cost

	e, known := b.entities[entity]
	switch {
	case !mapped || !known:
		pc.Note = NoteNoEntity
		return pc, nil, nil
	case slices.Contains(e.RelatedProviders, u.Provider):
		pc.Note = NoteRelatedParty
		return pc, nil, nil
	}

	year := Year(u.WindowStart)
	cands := b.candidates(e, u, year)
	if len(cands) == 0 {
		pc.Note = b.refusal(e, u, year)
		return pc, nil, nil
	}
	// One program per record (per piece): the soonest-expiring candidate's.
	prog := b.programs[cands[0].Program]
	ratio, capYear := prog.Terms(e, u.Model, u.WindowStart)
	sk := SubsidyKey{Program: prog.ID, Entity: entity, Year: year}
	sc, ok := b.subsidy[sk]
	if !ok {
		sc.Remainder = InitialSubsidyCarry(prog.Rounding)
	}
	ent, rem, err := Entitle(sc.Remainder, ratio, cost)
	if err != nil {
		return pc, nil, fmt.Errorf("entitlement: %w", err)
	}
	room, limit := b.room(prog, sk, capYear)
	grant := min(ent, room)
	pc.Program = prog.ID
	left := grant
	var grants []Grant
	resort := false
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
		grants = append(grants, Grant{Voucher: v.ID, Program: prog.ID, Amount: take})
		if v.FirstUse.IsZero() {
			v.FirstUse = u.WindowStart
			// A term from first use starts now (never past the voucher's
			// own expiry, the last day it may be first used).
			if prog.TermFrom == TermFromFirstUse && prog.VoucherTermMonths > 0 {
				if end := AddMonths(u.WindowStart, prog.VoucherTermMonths); end.Before(v.Expires) {
					v.Expires, resort = end, true
				}
			}
		}
	}
	if resort {
		vs := b.vouchers[entity]
		sort.Slice(vs, func(i, j int) bool { return soonerVoucher(vs[i], vs[j]) })
	}
	// What the program's vouchers could not cover is not owed later.
	if left > 0 {
		limit = LimitBalance
	}
	grant -= left
	pc.Subsidy = grant
	sc.Remainder, sc.Granted = rem, sc.Granted+grant
	b.subsidy[sk] = sc
	b.movedSubsidy[sk] = true
	b.lifetime[progEntity{prog.ID, entity}] += grant
	if prog.BudgetPerYear > 0 {
		bk := BudgetKey{Program: prog.ID, Year: year}
		b.budget[bk] += grant
		b.movedBudget[bk] = true
	}
	switch {
	case ent == 0:
		// Nothing was due (the program's fraction is in the carry): not
		// "subsidized", or a statement would count a record that no
		// voucher paid for and that the provider's claim leaves out.
		pc.Note = NoteUnderOneFen
	case grant < ent:
		pc.Note, pc.Limit = NotePartial, limit
	default:
		pc.Note = NoteSubsidized
	}
	return pc, grants, nil
}

// candidates are e's vouchers that may pay for u (docs/billing.md,
// Subsidizing a record, 1), soonest-expiring first. A program whose
// yearly or lifetime cap for the entity, or whose budget for the year, is
// used up is no candidate: its vouchers cannot pay, like empty ones, and
// another program's may.
func (b *Book) candidates(e Entity, u Usage, year int) []*Voucher {
	var out []*Voucher
	for _, v := range b.vouchers[e.ID] {
		if !v.UsableAt(u.WindowStart) {
			continue
		}
		p, ok := b.programs[v.Program]
		if !ok || !p.Covers(u.Provider, u.Model, u.WindowStart) {
			continue
		}
		_, capYear := p.Terms(e, u.Model, u.WindowStart)
		if room, _ := b.room(p, SubsidyKey{Program: p.ID, Entity: e.ID, Year: year}, capYear); room <= 0 {
			continue
		}
		out = append(out, v)
	}
	return out
}

// refusal is the note of usage no voucher of e pays for: the program term
// that bit when a voucher of e could pay but for its program's provider
// approval dates (first) or spent budget, else NoteNoVoucher.
func (b *Book) refusal(e Entity, u Usage, year int) string {
	note := NoteNoVoucher
	for _, v := range b.vouchers[e.ID] {
		p, ok := b.programs[v.Program]
		if !ok || !v.UsableAt(u.WindowStart) || u.WindowStart.Before(p.ValidFrom) || !u.WindowStart.Before(p.ValidTo) ||
			!slices.Contains(p.Providers, u.Provider) || len(p.Models) > 0 && !slices.Contains(p.Models, u.Model) {
			continue
		}
		if !p.Approved(u.Provider, u.WindowStart) {
			return NoteProviderNotApproved
		}
		if p.BudgetPerYear > 0 && b.budget[BudgetKey{Program: p.ID, Year: year}] >= p.BudgetPerYear {
			note = NoteBudgetSpent
		}
	}
	return note
}

// room is what program p may still grant the entity in sk's year, and
// which limit sets it: the yearly cap (capYear, the entity's category
// may change it) less that year's grants, the lifetime cap (if any) less
// all years' grants, and the program's budget (if any) less what it
// granted everyone that year.
func (b *Book) room(p Program, sk SubsidyKey, capYear Fen) (Fen, string) {
	left, limit := capYear-b.subsidy[sk].Granted, LimitYearCap
	if p.CapLifetime > 0 {
		if l := p.CapLifetime - b.lifetime[progEntity{p.ID, sk.Entity}]; l < left {
			left, limit = l, LimitLifetime
		}
	}
	if p.BudgetPerYear > 0 {
		if l := p.BudgetPerYear - b.budget[BudgetKey{Program: p.ID, Year: sk.Year}]; l < left {
			left, limit = l, LimitBudget
		}
	}
	return max(left, 0), limit
}

// Changes returns the state billing moved since NewBook.
func (b *Book) Changes() Changes {
	ch := Changes{CostCarries: map[CostKey]int64{}, SubsidyCarries: map[SubsidyKey]SubsidyCarry{}, Budgets: map[BudgetKey]Fen{}}
	for k := range b.movedBudget {
		ch.Budgets[k] = b.budget[k]
	}
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
