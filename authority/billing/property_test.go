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

// billInBatches bills w's usage in random batches, each over a new Book
// built from the state the previous ones left, as the store does.
func billInBatches(t *testing.T, rng *rand.Rand, w world) []Charge {
	st := w.state
	st.CostCarries = map[CostKey]int64{}
	st.SubsidyCarries = map[SubsidyKey]SubsidyCarry{}
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
	if multi < 10 {
		t.Errorf("only %d records paid by two vouchers", multi)
	}
	t.Logf("notes %v, records paid by two vouchers or more %d", notes, multi)
}

// replay is the test's own account of the state while charges are checked.
type replay struct {
	w        world
	balance  map[string]Fen
	programs map[string]Program
	granted  map[SubsidyKey]Fen
	lifetime map[progEntity]Fen
}

func (r *replay) capLeft(p Program, entity string, year int) Fen {
	left := p.CapPerYear - r.granted[SubsidyKey{p.ID, entity, year}]
	if p.CapLifetime > 0 {
		left = min(left, p.CapLifetime-r.lifetime[progEntity{p.ID, entity}])
	}
	return left
}

// usable lists entity's vouchers that could pay for u now, soonest first,
// with the program's cap ignored.
func (r *replay) usable(entity string, u Usage) []Voucher {
	var out []Voucher
	for _, v := range r.w.state.Vouchers {
		p := r.programs[v.Program]
		if v.Holder == entity && v.Status == VoucherActive && r.balance[v.ID] > 0 &&
			!u.WindowStart.Before(v.Issued) && u.WindowStart.Before(v.Expires) &&
			!u.WindowStart.Before(p.ValidFrom) && u.WindowStart.Before(p.ValidTo) &&
			slices.Contains(p.Providers, u.Provider) && (len(p.Models) == 0 || slices.Contains(p.Models, u.Model)) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if d := out[i].Expires.Compare(out[j].Expires); d != 0 {
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

func checkCharges(t *testing.T, seed uint64, w world, charges []Charge) {
	t.Helper()
	fail := func(i int, format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, record %d (%+v): %s", seed, i, w.usage[i], fmt.Sprintf(format, args...))
	}
	r := &replay{w: w, balance: map[string]Fen{}, programs: map[string]Program{},
		granted: map[SubsidyKey]Fen{}, lifetime: map[progEntity]Fen{}}
	for _, v := range w.state.Vouchers {
		r.balance[v.ID] = v.Balance
	}
	for _, p := range w.state.Programs {
		r.programs[p.ID] = p
	}
	entities := map[string]Entity{}
	for _, e := range w.state.Entities {
		entities[e.ID] = e
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
		c, num, den, priced := r.card(u)
		if !priced {
			if ch.Note != NoteUnpriced || ch.Cost != 0 || ch.RateCard != "" {
				fail(i, "no card, charge %+v", ch)
			}
			continue
		}
		if ch.RateCard != c.ID {
			fail(i, "priced by %q, want card %q", ch.RateCard, c.ID)
		}
		key := CostKey{u.Provider, u.Tenant, c.ID, den, Month(u.WindowStart)}
		if exact[key] == nil {
			exact[key] = new(big.Int)
		}
		exact[key].Add(exact[key], new(big.Int).Mul(big.NewInt(int64(c.PricePerHour)), big.NewInt(u.GPUMillis*num)))
		billed[key] += ch.Cost

		entity, mapped := w.state.Tenants[TenantKey{u.Provider, u.Tenant}]
		year := Year(u.WindowStart)
		var cands []Voucher
		if mapped && !slices.Contains(entities[entity].RelatedProviders, u.Provider) {
			for _, v := range r.usable(entity, u) {
				if r.capLeft(r.programs[v.Program], entity, year) > 0 {
					cands = append(cands, v)
				}
			}
		}
		switch {
		case !mapped:
			if ch.Note != NoteNoEntity || ch.Subsidy != 0 {
				fail(i, "unmapped tenant, charge %+v", ch)
			}
			continue
		case slices.Contains(entities[entity].RelatedProviders, u.Provider):
			if ch.Note != NoteRelatedParty || ch.Subsidy != 0 {
				fail(i, "related party, charge %+v", ch)
			}
			continue
		case len(cands) == 0:
			if ch.Note != NoteNoVoucher || ch.Subsidy != 0 {
				fail(i, "no voucher can pay, charge %+v", ch)
			}
			continue
		}
		// One program: the soonest candidate's; its vouchers pay in order,
		// each but the last emptied.
		p := r.programs[cands[0].Program]
		if ch.Program != p.ID || ch.Entity != entity {
			fail(i, "program %q entity %q, want %q %q", ch.Program, ch.Entity, p.ID, entity)
		}
		var own []Voucher
		for _, v := range cands {
			if v.Program == p.ID {
				own = append(own, v)
			}
		}
		for j, g := range ch.Grants {
			if j >= len(own) || g.Voucher != own[j].ID {
				fail(i, "grant %d from %s, want the vouchers in order %v", j, g.Voucher, own)
			}
			if g.Amount > r.balance[g.Voucher] {
				fail(i, "voucher %s overdrawn: %d of %d", g.Voucher, g.Amount, r.balance[g.Voucher])
			}
			r.balance[g.Voucher] -= g.Amount
			if j < len(ch.Grants)-1 && r.balance[g.Voucher] != 0 {
				fail(i, "voucher %s kept %d while the next paid", g.Voucher, r.balance[g.Voucher])
			}
		}
		sk := SubsidyKey{p.ID, entity, year}
		r.granted[sk] += ch.Subsidy
		r.lifetime[progEntity{p.ID, entity}] += ch.Subsidy
		if r.granted[sk] > p.CapPerYear || (p.CapLifetime > 0 && r.lifetime[progEntity{p.ID, entity}] > p.CapLifetime) {
			fail(i, "cap exceeded: year %d of %d, lifetime %d of %d", r.granted[sk], p.CapPerYear, r.lifetime[progEntity{p.ID, entity}], p.CapLifetime)
		}
		if entitled[sk] == nil {
			entitled[sk] = new(big.Int)
		}
		entitled[sk].Add(entitled[sk], new(big.Int).Mul(big.NewInt(int64(p.RatioFor(u.Model))), big.NewInt(int64(ch.Cost))))
		subsidized[sk] += ch.Subsidy
		switch ch.Note {
		case NoteSubsidized:
			if ch.Subsidy == 0 {
				fail(i, "noted subsidized with no subsidy")
			}
		case NoteUnderOneFen:
			if ch.Subsidy != 0 || len(ch.Grants) != 0 {
				fail(i, "noted %s with subsidy %d from %v", ch.Note, ch.Subsidy, ch.Grants)
			}
		case NotePartial:
			cut[sk] = true
			// Something bound: a cap, or every voucher of the program.
			var left Fen
			for _, v := range own {
				left += r.balance[v.ID]
			}
			if r.capLeft(p, entity, year) > 0 && left > 0 {
				fail(i, "partial with cap left %d and balances %d", r.capLeft(p, entity, year), left)
			}
		default:
			fail(i, "note %q for a subsidized record", ch.Note)
		}
	}
	// Costs: each carry key's records sum to its exact total rounded half up.
	for k, x := range exact {
		d := CostDenominator(k.SliceDen)
		want := new(big.Int).Add(x, big.NewInt(d/2))
		want.Quo(want, big.NewInt(d))
		if want.Int64() != int64(billed[k]) {
			t.Fatalf("seed %d: %+v billed %d fen, exact total rounded is %s", seed, k, billed[k], want)
		}
	}
	// Subsidies: never above ratio × cost (rounded by the program's rule);
	// exactly that when no cap or balance cut it.
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
