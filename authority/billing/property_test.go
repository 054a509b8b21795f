package billing

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"
)

// world is a random billing setup and the usage to bill over it.
type world struct {
	state State
	usage []Usage
}

var (
	propProviders = []string{"p1", "p2"}
	propModels    = []string{"H100-SXM5-80GB", "A100-SXM4-80GB", "H20-96GB"}
	propProfiles  = []string{"", "1g", "3g"}
	propEntities  = []string{"E1", "E2", "E3"}
	// Kinds of firm programs may grant other terms to.
	propCategories = []string{"early", "micro"}
	// The span crosses a year end: yearly caps and month carries restart.
	propStart = time.Date(2026, 11, 1, 0, 0, 0, 0, cst)
	propSpan  = 92 * 24 * time.Hour
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func someOf(rng *rand.Rand, xs []string) []string {
	var out []string
	for _, x := range xs {
		if rng.IntN(2) == 0 {
			out = append(out, x)
		}
	}
	return out
}

func randTime(rng *rand.Rand) time.Time {
	return propStart.Add(time.Duration(rng.Int64N(int64(propSpan/time.Minute))) * time.Minute)
}

func randomWorld(rng *rand.Rand) world {
	var w world
	st := &w.state
	for _, id := range propEntities {
		e := Entity{ID: id}
		for _, p := range propProviders {
			if rng.IntN(6) == 0 {
				e.RelatedProviders = append(e.RelatedProviders, p)
			}
		}
		for _, c := range propCategories {
			if rng.IntN(2) == 0 {
				cat := Category{Name: c, From: randTime(rng).Add(-20 * 24 * time.Hour)}
				if rng.IntN(2) == 0 {
					cat.To = cat.From.Add(time.Duration(1+rng.IntN(60*24*30)) * time.Minute)
				}
				e.Categories = append(e.Categories, cat)
			}
		}
		st.Entities = append(st.Entities, e)
	}
	st.Tenants = map[TenantKey]string{}
	for _, p := range propProviders {
		for i := range 5 {
			if rng.IntN(8) != 0 {
				st.Tenants[TenantKey{p, fmt.Sprint("t", i)}] = pick(rng, propEntities)
			}
		}
	}
	n := 0
	for _, p := range propProviders {
		for _, m := range propModels {
			for _, prof := range propProfiles {
				if rng.IntN(5) == 0 {
					continue // no card: unpriced, or a MIG fallback
				}
				// Contiguous cards with changes at random times.
				from := propStart.Add(-time.Duration(rng.IntN(48)) * time.Hour)
				for range 1 + rng.IntN(3) {
					n++
					c := RateCard{ID: fmt.Sprint("c", n), Provider: p, Model: m, MIGProfile: prof, ValidFrom: from}
					if rng.IntN(3) == 0 {
						c.PricePerHour = Fen(rng.IntN(400)) // sub-fen minutes
					} else {
						c.PricePerHour = Fen(rng.IntN(60_000))
					}
					if rng.IntN(2) == 0 {
						c.ValidTo = from.Add(time.Duration(1+rng.IntN(60*24*40)) * time.Minute)
					}
					st.Cards = append(st.Cards, c)
					if c.ValidTo.IsZero() {
						break
					}
					from = c.ValidTo
					if rng.IntN(4) == 0 {
						from = from.Add(time.Duration(rng.IntN(600)) * time.Minute) // a hole
					}
				}
			}
		}
	}
	for i := range 1 + rng.IntN(2) {
		from, to := propStart, propStart.Add(propSpan)
		if rng.IntN(2) == 0 {
			from, to = randTime(rng).Add(-30*24*time.Hour), randTime(rng).Add(40*24*time.Hour)
			if !to.After(from) {
				from, to = to, from.Add(time.Hour)
			}
		}
		p := Program{ID: fmt.Sprint("P", i), Issuer: "city", Ratio: BasisPoints(rng.IntN(10_001)),
			CapPerYear: Fen(1 + rng.IntN(30_000)), Providers: someOf(rng, propProviders),
			ValidFrom: from, ValidTo: to, Rounding: pick(rng, []string{RoundHalfUp, RoundTruncate}), Settlement: SettleAfter}
		if rng.IntN(2) == 0 {
			p.Providers = propProviders
		}
		if len(p.Providers) == 0 {
			p.Providers = []string{pick(rng, propProviders)}
		}
		if rng.IntN(2) == 0 {
			p.Models = someOf(rng, propModels)
		}
		if rng.IntN(2) == 0 {
			p.ModelRatios = map[string]BasisPoints{}
			for _, m := range propModels {
				if rng.IntN(2) == 0 && (len(p.Models) == 0 || slices.Contains(p.Models, m)) {
					p.ModelRatios[m] = BasisPoints(rng.IntN(10_001))
				}
			}
		}
		if rng.IntN(2) == 0 {
			p.CapLifetime = Fen(1 + rng.IntN(40_000))
		}
		randomTerms(rng, &p)
		if err := ValidateProgram(p); err != nil {
			panic(err)
		}
		st.Programs = append(st.Programs, p)
	}
	for i := range rng.IntN(14) {
		p := pick(rng, st.Programs)
		issued := propStart.Add(-time.Duration(rng.IntN(20*24)) * time.Hour)
		if rng.IntN(2) == 0 {
			issued = randTime(rng)
		}
		v := Voucher{ID: fmt.Sprintf("v%02d", i), Program: p.ID, Holder: pick(rng, propEntities),
			Face: Fen(1 + rng.IntN(5_000)), Issued: issued, Status: VoucherActive,
			Expires: issued.Add(time.Duration(1+rng.IntN(120*24)) * time.Hour)}
		if rng.IntN(4) == 0 && len(st.Vouchers) > 0 {
			v.Expires = pick(rng, st.Vouchers).Expires // equal expiries: the id decides
		}
		v.Balance = v.Face - Fen(rng.Int64N(int64(v.Face)/2+1))
		if rng.IntN(8) == 0 {
			v.Status = pick(rng, []string{VoucherSuspended, VoucherRevoked})
		}
		if !v.Expires.After(v.Issued) {
			v.Expires = v.Issued.Add(time.Hour)
		}
		st.Vouchers = append(st.Vouchers, v)
	}
	for i := range 100 + rng.IntN(500) {
		u := Usage{RecordID: fmt.Sprintf("r%04d", i), Provider: pick(rng, propProviders),
			Tenant: fmt.Sprint("t", rng.IntN(6)), Model: pick(rng, propModels), MIGProfile: pick(rng, propProfiles),
			SliceNum: 1, SliceDen: 1, WindowStart: randTime(rng), GPUMillis: rng.Int64N(60_001)}
		// Most records have a window end, up to three hours on (at any
		// millisecond): those straddling a boundary are split.
		if rng.IntN(4) != 0 {
			wall := 1 + rng.Int64N(3*3_600_000)
			u.WindowStart = u.WindowStart.Add(time.Duration(rng.IntN(60_000)) * time.Millisecond)
			u.WindowEnd = u.WindowStart.Add(time.Duration(wall) * time.Millisecond)
			u.GPUMillis = rng.Int64N(wall + 1)
		}
		if u.MIGProfile != "" {
			u.SliceNum, u.SliceDen = int64(1+rng.IntN(7)), 7
			if rng.IntN(20) == 0 {
				u.SliceNum = 9 // not a share of a GPU: unpriced on fallback
			}
		}
		w.usage = append(w.usage, u)
	}
	sort.Slice(w.usage, func(i, j int) bool {
		a, b := w.usage[i], w.usage[j]
		if !a.WindowStart.Equal(b.WindowStart) {
			return a.WindowStart.Before(b.WindowStart)
		}
		return a.RecordID < b.RecordID
	})
	return w
}

// randomTerms gives p some of the terms programs state: provider
// approval periods, category terms, a yearly budget, a term from first use.
func randomTerms(rng *rand.Rand, p *Program) {
	for _, prov := range p.Providers {
		if rng.IntN(3) == 0 {
			if p.Approvals == nil {
				p.Approvals = map[string]Approval{}
			}
			a := Approval{From: randTime(rng)}
			if rng.IntN(2) == 0 {
				a.To = a.From.Add(time.Duration(1+rng.IntN(60*24*30)) * time.Minute)
			}
			if rng.IntN(3) == 0 {
				a.From = time.Time{}
			}
			p.Approvals[prov] = a
		}
	}
	for _, c := range propCategories {
		if rng.IntN(2) == 0 {
			if p.CategoryTerms == nil {
				p.CategoryTerms = map[string]CategoryTerm{}
			}
			t := CategoryTerm{Ratio: BasisPoints(rng.IntN(10_001))}
			if rng.IntN(2) == 0 {
				t.CapPerYear = Fen(1 + rng.IntN(30_000))
			}
			p.CategoryTerms[c] = t
		}
	}
	if rng.IntN(3) == 0 {
		p.BudgetPerYear = Fen(1 + rng.IntN(40_000))
	}
	if rng.IntN(3) == 0 {
		p.VoucherTermMonths, p.TermFrom = 1+rng.IntN(2), TermFromFirstUse
	}
}

// billInBatches bills w's usage in random batches, each over a new Book
// built from the state the previous ones left, as the store does.
func billInBatches(t *testing.T, rng *rand.Rand, w world) []Charge {
	st := w.state
	st.CostCarries = map[CostKey]int64{}
	st.SubsidyCarries = map[SubsidyKey]SubsidyCarry{}
	st.Budgets = map[BudgetKey]Fen{}
	st.Vouchers = slices.Clone(st.Vouchers)
	var out []Charge
	for i := 0; i < len(w.usage); {
		n := min(1+rng.IntN(80), len(w.usage)-i)
		b := NewBook(st)
		for _, u := range w.usage[i : i+n] {
			ch, err := b.Bill(u)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ch)
		}
		i += n
		ch := b.Changes()
		for _, v := range ch.Vouchers {
			for j := range st.Vouchers {
				if st.Vouchers[j].ID == v.ID {
					st.Vouchers[j] = v
				}
			}
		}
		for k, r := range ch.CostCarries {
			st.CostCarries[k] = r
		}
		for k, c := range ch.SubsidyCarries {
			st.SubsidyCarries[k] = c
		}
		for k, f := range ch.Budgets {
			st.Budgets[k] = f
		}
	}
	return out
}

// TestBookProperties bills random usage over random programs, vouchers
// and cards and checks the rulebook's invariants against an independent
// replay.
func TestBookProperties(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 40
	}
	notes := map[string]int{}
	multi := 0 // records paid by more than one voucher
	split := 0 // records billed in pieces
	limits := map[string]int{}
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 0x6770756d65746572))
		w := randomWorld(rng)
		b := NewBook(w.state)
		charges := make([]Charge, len(w.usage))
		for i, u := range w.usage {
			ch, err := b.Bill(u)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			charges[i] = ch
			notes[ch.Note]++
			if len(ch.Grants) > 1 {
				multi++
			}
			if len(ch.Pieces) > 1 {
				split++
			}
			limits[ch.Limit]++
		}
		checkCharges(t, seed, w, charges)
		// Changes hold each paying voucher's balance less its grants.
		spent := map[string]Fen{}
		for _, ch := range charges {
			for _, g := range ch.Grants {
				spent[g.Voucher] += g.Amount
			}
		}
		changed := b.Changes().Vouchers
		if len(changed) != len(spent) {
			t.Fatalf("seed %d: %d vouchers changed, %d paid", seed, len(changed), len(spent))
		}
		for _, v := range changed {
			for _, v0 := range w.state.Vouchers {
				if v0.ID == v.ID && v.Balance != v0.Balance-spent[v.ID] {
					t.Fatalf("seed %d: voucher %s balance %d, want %d - %d", seed, v.ID, v.Balance, v0.Balance, spent[v.ID])
				}
			}
		}
		// The same records in batches over reloaded state bill the same.
		if batched := billInBatches(t, rng, w); !reflect.DeepEqual(batched, charges) {
			t.Fatalf("seed %d: billing in batches differs from billing at once", seed)
		}
	}
	// The random worlds reach every outcome, or the checks above prove little.
	for _, n := range []string{NoteSubsidized, NotePartial, NoteNoEntity, NoteNoVoucher, NoteUnpriced, NoteRelatedParty} {
		if notes[n] < 10 {
			t.Errorf("only %d charges noted %s over %d seeds", notes[n], n, seeds)
		}
	}
	for _, n := range []string{NoteProviderNotApproved, NoteBudgetSpent} {
		if notes[n] < 5 {
			t.Errorf("only %d charges noted %s over %d seeds", notes[n], n, seeds)
		}
	}
	for _, l := range []string{LimitBalance, LimitYearCap, LimitLifetime, LimitBudget} {
		if limits[l] < 5 {
			t.Errorf("only %d partial charges cut by %s over %d seeds", limits[l], l, seeds)
		}
	}
	if multi < 10 || split < 100 {
		t.Errorf("only %d records paid by two vouchers, %d split", multi, split)
	}
	t.Logf("notes %v, limits %v, records paid by two vouchers or more %d, split %d", notes, limits, multi, split)
}

// replay is the test's own account of the state while charges are checked.
type replay struct {
	w        world
	balance  map[string]Fen
	expires  map[string]time.Time // a term from first use shortens it
	used     map[string]bool      // the voucher has paid once
	programs map[string]Program
	entities map[string]Entity
	granted  map[SubsidyKey]Fen
	lifetime map[progEntity]Fen
	budget   map[BudgetKey]Fen
}

// terms are the replay's ratio and yearly cap of p for e's usage of model
// at t: the best category term (highest ratio, then name) replaces the
// base ratio and, if set, the cap; the model override adds its difference
// from the base, held to 0-10000.
func (r *replay) terms(p Program, e Entity, model string, t time.Time) (BasisPoints, Fen) {
	ratio, capYear := p.Ratio, p.CapPerYear
	if m, ok := p.ModelRatios[model]; ok {
		ratio = m
	}
	best, found := "", false
	for _, c := range e.Categories {
		term, ok := p.CategoryTerms[c.Name]
		if !ok || t.Before(c.From) || (!c.To.IsZero() && !t.Before(c.To)) {
			continue
		}
		if !found || term.Ratio > p.CategoryTerms[best].Ratio || term.Ratio == p.CategoryTerms[best].Ratio && c.Name < best {
			best, found = c.Name, true
		}
	}
	if !found {
		return ratio, capYear
	}
	term := p.CategoryTerms[best]
	ratio = max(0, min(10_000, term.Ratio+ratio-p.Ratio))
	if term.CapPerYear > 0 {
		capYear = term.CapPerYear
	}
	return ratio, capYear
}

// capLeft is what p may still grant entity in year under yearly cap
// capYear, its lifetime cap and its budget.
func (r *replay) capLeft(p Program, entity string, year int, capYear Fen) Fen {
	left := capYear - r.granted[SubsidyKey{p.ID, entity, year}]
	if p.CapLifetime > 0 {
		left = min(left, p.CapLifetime-r.lifetime[progEntity{p.ID, entity}])
	}
	if p.BudgetPerYear > 0 {
		left = min(left, p.BudgetPerYear-r.budget[BudgetKey{p.ID, year}])
	}
	return left
}

func approvedAt(p Program, provider string, t time.Time) bool {
	a, ok := p.Approvals[provider]
	return slices.Contains(p.Providers, provider) &&
		(!ok || (a.From.IsZero() || !t.Before(a.From)) && (a.To.IsZero() || t.Before(a.To)))
}

// usable lists entity's vouchers that could pay for u now, soonest first,
// with the program's caps and budget ignored; approved false lists those
// that could but for the provider's approval dates.
func (r *replay) usable(entity string, u Usage, approved bool) []Voucher {
	var out []Voucher
	for _, v := range r.w.state.Vouchers {
		p := r.programs[v.Program]
		if v.Holder == entity && v.Status == VoucherActive && r.balance[v.ID] > 0 &&
			!u.WindowStart.Before(v.Issued) && u.WindowStart.Before(r.expires[v.ID]) &&
			!u.WindowStart.Before(p.ValidFrom) && u.WindowStart.Before(p.ValidTo) &&
			slices.Contains(p.Providers, u.Provider) && approvedAt(p, u.Provider, u.WindowStart) == approved &&
			(len(p.Models) == 0 || slices.Contains(p.Models, u.Model)) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if d := r.expires[out[i].ID].Compare(r.expires[out[j].ID]); d != 0 {
			return d < 0
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// card is the test's own rate card lookup.
func (r *replay) card(u Usage) (RateCard, int64, int64, bool) {
	find := func(profile string) (RateCard, bool) {
		for _, c := range r.w.state.Cards {
			if c.Provider == u.Provider && c.Model == u.Model && c.MIGProfile == profile &&
				!u.WindowStart.Before(c.ValidFrom) && (c.ValidTo.IsZero() || u.WindowStart.Before(c.ValidTo)) {
				return c, true
			}
		}
		return RateCard{}, false
	}
	if c, ok := find(u.MIGProfile); ok {
		return c, 1, 1, true
	}
	if u.MIGProfile == "" || u.SliceNum > u.SliceDen {
		return RateCard{}, 0, 0, false
	}
	c, ok := find("")
	return c, u.SliceNum, u.SliceDen, ok
}

// pieces is the replay's split of u: at every start and end inside its
// window of the cards that may price it, of entity's vouchers that may
// still pay (and of their programs and the provider's approval), and of
// entity's categories; GPU time by the running floor, in big integers.
func (r *replay) pieces(u Usage, entity string) []Usage {
	if !u.WindowEnd.After(u.WindowStart) {
		return []Usage{u}
	}
	var cuts []time.Time
	for _, c := range r.w.state.Cards {
		if c.Provider == u.Provider && c.Model == u.Model && (c.MIGProfile == u.MIGProfile || u.MIGProfile != "" && c.MIGProfile == "") {
			cuts = append(cuts, c.ValidFrom, c.ValidTo)
		}
	}
	for _, v := range r.w.state.Vouchers {
		if v.Holder != entity || v.Status != VoucherActive || r.balance[v.ID] <= 0 {
			continue
		}
		p := r.programs[v.Program]
		cuts = append(cuts, v.Issued, r.expires[v.ID], p.ValidFrom, p.ValidTo, p.Approvals[u.Provider].From, p.Approvals[u.Provider].To)
	}
	for _, c := range r.entities[entity].Categories {
		cuts = append(cuts, c.From, c.To)
	}
	var in []time.Time
	for _, t := range cuts {
		if t.After(u.WindowStart) && t.Before(u.WindowEnd) && !slices.ContainsFunc(in, t.Equal) {
			in = append(in, t)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Before(in[j]) })
	wall := big.NewInt(u.WindowEnd.Sub(u.WindowStart).Milliseconds())
	floorAt := func(t time.Time) int64 {
		x := new(big.Int).Mul(big.NewInt(u.GPUMillis), big.NewInt(t.Sub(u.WindowStart).Milliseconds()))
		return x.Quo(x, wall).Int64()
	}
	var out []Usage
	start := u.WindowStart
	for _, end := range append(in, u.WindowEnd) {
		pu := u
		pu.WindowStart, pu.WindowEnd, pu.GPUMillis = start, end, floorAt(end)-floorAt(start)
		out = append(out, pu)
		start = end
	}
	return out
}

func checkCharges(t *testing.T, seed uint64, w world, charges []Charge) {
	t.Helper()
	fail := func(i int, format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, record %d (%+v): %s", seed, i, w.usage[i], fmt.Sprintf(format, args...))
	}
	r := &replay{w: w, balance: map[string]Fen{}, expires: map[string]time.Time{}, used: map[string]bool{},
		programs: map[string]Program{}, entities: map[string]Entity{},
		granted: map[SubsidyKey]Fen{}, lifetime: map[progEntity]Fen{}, budget: map[BudgetKey]Fen{}}
	for _, v := range w.state.Vouchers {
		r.balance[v.ID], r.expires[v.ID] = v.Balance, v.Expires
	}
	for _, p := range w.state.Programs {
		r.programs[p.ID] = p
	}
	for _, e := range w.state.Entities {
		r.entities[e.ID] = e
	}
	exact := map[CostKey]*big.Int{}       // Σ price × ms × num per carry key
	billed := map[CostKey]Fen{}           // Σ cost per carry key
	entitled := map[SubsidyKey]*big.Int{} // Σ ratio × cost per program, entity, year
	subsidized := map[SubsidyKey]Fen{}
	cut := map[SubsidyKey]bool{}
	for i, ch := range charges {
		u := w.usage[i]
		if ch.RecordID != u.RecordID || ch.Cost < 0 || ch.Subsidy < 0 || ch.Subsidy > ch.Cost || ch.Payable() != ch.Cost-ch.Subsidy {
			fail(i, "bad amounts %+v", ch)
		}
		var sum Fen
		for _, g := range ch.Grants {
			if g.Amount <= 0 {
				fail(i, "grant %+v is not positive", g)
			}
			sum += g.Amount
		}
		if sum != ch.Subsidy {
			fail(i, "grants sum to %d, subsidy %d", sum, ch.Subsidy)
		}
		entity, mapped := w.state.Tenants[TenantKey{u.Provider, u.Tenant}]
		parts := r.pieces(u, entity)
		got := ch.Pieces
		if len(parts) == 1 {
			if len(got) != 0 {
				fail(i, "split into %d pieces, the replay bills it whole", len(got))
			}
			got = []Piece{{Start: u.WindowStart, End: u.WindowEnd, GPUMillis: u.GPUMillis, RateCard: ch.RateCard,
				Cost: ch.Cost, Subsidy: ch.Subsidy, Program: ch.Program, Note: ch.Note, Limit: ch.Limit}}
		} else if len(got) != len(parts) {
			fail(i, "%d pieces, the replay cuts %d: %+v", len(got), len(parts), parts)
		}
		var wantGrants []Grant
		var cost, subsidy Fen
		for j, pu := range parts {
			pc := got[j]
			if !pc.Start.Equal(pu.WindowStart) || !pc.End.Equal(pu.WindowEnd) || pc.GPUMillis != pu.GPUMillis {
				fail(i, "piece %d %+v, the replay's %+v", j, pc, pu)
			}
			cost += pc.Cost
			subsidy += pc.Subsidy
			fail := func(format string, args ...any) {
				t.Helper()
				fail(i, "piece %d: %s", j, fmt.Sprintf(format, args...))
			}
			c, num, den, priced := r.card(pu)
			if !priced {
				if pc.Note != NoteUnpriced || pc.Cost != 0 || pc.RateCard != "" {
					fail("no card, piece %+v", pc)
				}
				continue
			}
			if pc.RateCard != c.ID {
				fail("priced by %q, want card %q", pc.RateCard, c.ID)
			}
			key := CostKey{u.Provider, u.Tenant, c.ID, den, Month(pu.WindowStart)}
			if exact[key] == nil {
				exact[key] = new(big.Int)
			}
			exact[key].Add(exact[key], new(big.Int).Mul(big.NewInt(int64(c.PricePerHour)), big.NewInt(pu.GPUMillis*num)))
			billed[key] += pc.Cost

			e := r.entities[entity]
			year := Year(pu.WindowStart)
			var cands []Voucher
			if mapped && !slices.Contains(e.RelatedProviders, u.Provider) {
				for _, v := range r.usable(entity, pu, true) {
					p := r.programs[v.Program]
					if _, capYear := r.terms(p, e, u.Model, pu.WindowStart); r.capLeft(p, entity, year, capYear) > 0 {
						cands = append(cands, v)
					}
				}
			}
			switch {
			case !mapped:
				if pc.Note != NoteNoEntity || pc.Subsidy != 0 {
					fail("unmapped tenant, piece %+v", pc)
				}
				continue
			case slices.Contains(e.RelatedProviders, u.Provider):
				if pc.Note != NoteRelatedParty || pc.Subsidy != 0 {
					fail("related party, piece %+v", pc)
				}
				continue
			case len(cands) == 0:
				// Why: the first voucher that would pay but for the
				// provider's approval dates or its program's budget.
				want := NoteNoVoucher
				for _, v := range r.usable(entity, pu, false) {
					_ = v
					want = NoteProviderNotApproved
					break
				}
				for _, v := range r.usable(entity, pu, true) {
					if want != NoteNoVoucher {
						break
					}
					p := r.programs[v.Program]
					if p.BudgetPerYear > 0 && r.budget[BudgetKey{p.ID, year}] >= p.BudgetPerYear {
						want = NoteBudgetSpent
					}
				}
				if pc.Note != want || pc.Subsidy != 0 {
					fail("no voucher can pay (%s), piece %+v", want, pc)
				}
				continue
			}
			// One program: the soonest candidate's; its vouchers pay in
			// order, each but the last emptied.
			p := r.programs[cands[0].Program]
			if pc.Program != p.ID || ch.Entity != entity {
				fail("program %q entity %q, want %q %q", pc.Program, ch.Entity, p.ID, entity)
			}
			left := pc.Subsidy
			var own []Voucher
			for _, v := range cands {
				if v.Program != p.ID {
					continue
				}
				own = append(own, v)
				take := min(left, r.balance[v.ID])
				if take == 0 {
					continue
				}
				wantGrants = mergeGrants(wantGrants, []Grant{{Voucher: v.ID, Program: p.ID, Amount: take}})
				r.balance[v.ID] -= take
				left -= take
				if !r.used[v.ID] {
					r.used[v.ID] = true
					if p.TermFrom == TermFromFirstUse {
						if end := pu.WindowStart.In(cst).AddDate(0, p.VoucherTermMonths, 0); end.Before(r.expires[v.ID]) {
							r.expires[v.ID] = end
						}
					}
				}
			}
			if left != 0 {
				fail("subsidy %d is more than the program's vouchers held", pc.Subsidy)
			}
			sk := SubsidyKey{p.ID, entity, year}
			ratio, capYear := r.terms(p, e, u.Model, pu.WindowStart)
			r.granted[sk] += pc.Subsidy
			r.lifetime[progEntity{p.ID, entity}] += pc.Subsidy
			r.budget[BudgetKey{p.ID, year}] += pc.Subsidy
			if r.capLeft(p, entity, year, capYear) < 0 || (p.BudgetPerYear == 0 && r.budget[BudgetKey{p.ID, year}] < 0) {
				fail("cap or budget exceeded: year %d of %d, lifetime %d of %d, budget %d of %d", r.granted[sk], capYear,
					r.lifetime[progEntity{p.ID, entity}], p.CapLifetime, r.budget[BudgetKey{p.ID, year}], p.BudgetPerYear)
			}
			if entitled[sk] == nil {
				entitled[sk] = new(big.Int)
			}
			entitled[sk].Add(entitled[sk], new(big.Int).Mul(big.NewInt(int64(ratio)), big.NewInt(int64(pc.Cost))))
			subsidized[sk] += pc.Subsidy
			switch pc.Note {
			case NoteSubsidized:
				if pc.Subsidy == 0 || pc.Limit != "" {
					fail("noted subsidized with subsidy %d, limit %q", pc.Subsidy, pc.Limit)
				}
			case NoteUnderOneFen:
				if pc.Subsidy != 0 {
					fail("noted %s with subsidy %d", pc.Note, pc.Subsidy)
				}
			case NotePartial:
				cut[sk] = true
				// What bound: the program's vouchers all emptied, or the
				// cap or budget the limit names used up.
				var bal Fen
				for _, v := range own {
					bal += r.balance[v.ID]
				}
				var bound bool
				switch pc.Limit {
				case LimitBalance:
					bound = bal == 0
				case LimitYearCap:
					bound = r.granted[sk] == capYear
				case LimitLifetime:
					bound = r.lifetime[progEntity{p.ID, entity}] == p.CapLifetime
				case LimitBudget:
					bound = r.budget[BudgetKey{p.ID, year}] == p.BudgetPerYear
				}
				if !bound {
					fail("partial, limit %q, with cap left %d and balances %d", pc.Limit, r.capLeft(p, entity, year, capYear), bal)
				}
			default:
				fail("note %q for a subsidized piece", pc.Note)
			}
		}
		if cost != ch.Cost || subsidy != ch.Subsidy {
			fail(i, "pieces sum to cost %d subsidy %d, the charge has %d %d", cost, subsidy, ch.Cost, ch.Subsidy)
		}
		if !reflect.DeepEqual(wantGrants, ch.Grants) {
			fail(i, "grants %v, the replay drew %v", ch.Grants, wantGrants)
		}
	}
	// Costs: each carry key's pieces sum to its exact total rounded half up.
	for k, x := range exact {
		d := CostDenominator(k.SliceDen)
		want := new(big.Int).Add(x, big.NewInt(d/2))
		want.Quo(want, big.NewInt(d))
		if want.Int64() != int64(billed[k]) {
			t.Fatalf("seed %d: %+v billed %d fen, exact total rounded is %s", seed, k, billed[k], want)
		}
	}
	// Subsidies: never above ratio × cost (rounded by the program's rule);
	// exactly that when no cap, budget or balance cut it.
	for sk, x := range entitled {
		p := r.programs[sk.Program]
		limit := new(big.Int).Add(x, big.NewInt(InitialSubsidyCarry(p.Rounding)))
		limit.Quo(limit, big.NewInt(bpDen))
		if int64(subsidized[sk]) > limit.Int64() || (!cut[sk] && int64(subsidized[sk]) != limit.Int64()) {
			t.Fatalf("seed %d: %+v subsidized %d fen, ratio × cost is %s (cut: %v)", seed, sk, subsidized[sk], limit, cut[sk])
		}
	}
	for _, v := range w.state.Vouchers {
		if r.balance[v.ID] < 0 || r.balance[v.ID] > v.Face {
			t.Fatalf("seed %d: voucher %s balance %d, face %d", seed, v.ID, r.balance[v.ID], v.Face)
		}
	}
}
