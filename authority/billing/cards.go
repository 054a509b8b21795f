package billing

import (
	"sort"
	"time"
)

// Usage is what the engine needs of a usage record.
type Usage struct {
	RecordID    string
	Provider    string
	Tenant      string
	Model       string
	MIGProfile  string
	SliceNum    int64
	SliceDen    int64
	WindowStart time.Time
	// WindowEnd is the window's end (exclusive); zero bills the record by
	// its start alone (it is never split).
	WindowEnd time.Time
	GPUMillis int64
}

// CostKey names a cost carry: the sub-fen remainder of the running cost of
// one tenant at one provider under one card in one month. SliceDen is the
// carry's unit (CostDenominator): 1 unless MIG records fall back to the
// whole-GPU card, whose costs are in 1/SliceDen-th of the card's unit and
// carried apart.
type CostKey struct {
	Provider string
	Tenant   string
	RateCard string
	SliceDen int64
	Month    string // Month(window start)
}

// Pricing is how a record is priced: by Card, scaled by Num/Den (1/1
// unless a MIG record falls back to the whole-GPU card), carried under Key.
type Pricing struct {
	Card     RateCard
	Num, Den int64
	Key      CostKey
}

type cardKey struct{ provider, model, profile string }

// CardIndex finds the rate card in force. Immutable once built.
type CardIndex struct {
	by map[cardKey][]RateCard // sorted by ValidFrom
}

// NewCardIndex indexes cards (which must not overlap per provider, model
// and profile: the store refuses overlapping cards).
func NewCardIndex(cards []RateCard) *CardIndex {
	ix := &CardIndex{by: map[cardKey][]RateCard{}}
	for _, c := range cards {
		k := cardKey{c.Provider, c.Model, c.MIGProfile}
		ix.by[k] = append(ix.by[k], c)
	}
	for _, cs := range ix.by {
		sort.Slice(cs, func(i, j int) bool { return cs[i].ValidFrom.Before(cs[j].ValidFrom) })
	}
	return ix
}

// Bounds are the starts and ends of every card that may price u (its
// profile's, and the whole GPU's for a MIG record).
func (ix *CardIndex) Bounds(u Usage) []time.Time { return ix.bounds(u, nil) }

// bounds appends the start and end of every card that may price u (its
// profile's, and the whole GPU's for a MIG record) to ts.
func (ix *CardIndex) bounds(u Usage, ts []time.Time) []time.Time {
	keys := []cardKey{{u.Provider, u.Model, u.MIGProfile}}
	if u.MIGProfile != "" {
		keys = append(keys, cardKey{u.Provider, u.Model, ""})
	}
	for _, k := range keys {
		for _, c := range ix.by[k] {
			ts = append(ts, c.ValidFrom, c.ValidTo)
		}
	}
	return ts
}

// find returns the card of (provider, model, profile) in force at t.
func (ix *CardIndex) find(provider, model, profile string, t time.Time) (RateCard, bool) {
	cs := ix.by[cardKey{provider, model, profile}]
	// The last card starting at or before t is the only candidate.
	i := sort.Search(len(cs), func(i int) bool { return cs[i].ValidFrom.After(t) }) - 1
	if i < 0 {
		return RateCard{}, false
	}
	c := cs[i]
	if !c.ValidTo.IsZero() && !t.Before(c.ValidTo) {
		return RateCard{}, false
	}
	return c, true
}

// Price says how u is priced (docs/billing.md, Pricing a record): the card
// of its provider, model and MIG profile in force at its window start; for
// a MIG record without one, the whole-GPU card scaled by the record's
// slice. false: no card (or a fallback with a slice that is not a share
// of a GPU): the record is unpriced.
func (ix *CardIndex) Price(u Usage) (Pricing, bool) {
	p := Pricing{Num: 1, Den: 1}
	c, ok := ix.find(u.Provider, u.Model, u.MIGProfile, u.WindowStart)
	if !ok && u.MIGProfile != "" {
		if u.SliceDen < 1 || u.SliceDen > MaxSliceDen || u.SliceNum < 1 || u.SliceNum > u.SliceDen {
			return Pricing{}, false
		}
		c, ok = ix.find(u.Provider, u.Model, "", u.WindowStart)
		p.Num, p.Den = u.SliceNum, u.SliceDen
	}
	if !ok {
		return Pricing{}, false
	}
	p.Card = c
	p.Key = CostKey{Provider: u.Provider, Tenant: u.Tenant, RateCard: c.ID, SliceDen: p.Den, Month: Month(u.WindowStart)}
	return p, true
}
