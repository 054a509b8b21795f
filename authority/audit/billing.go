package audit

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/inventory"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/protocol"
)

// replay is billing recomputed by walking the log in order: voucher
// leaves move the vouchers (issue, status, a decision's return), batch
// leaves are billed by billing.Book over the state the leaves before
// them left, exactly as ingest billed them in that order.
type replay struct {
	base     billing.State // cards, tenants, entities, programs
	meta     map[string]store.AuditRow
	vouchers map[string]*billing.Voucher
	order    []string // voucher ids in issue order
	cost     map[billing.CostKey]int64
	subsidy  map[billing.SubsidyKey]billing.SubsidyCarry
	charges  map[string]billing.Charge
	// From the log: grants per record and voucher, and decisions.
	logged   map[string]map[string]int64
	held     map[string]bool
	decision map[string]string // record -> approved | rejected
}

func (a *auditor) checkBilling() error {
	ctx := a.ctx
	r := &replay{meta: map[string]store.AuditRow{}, vouchers: map[string]*billing.Voucher{},
		cost: map[billing.CostKey]int64{}, subsidy: map[billing.SubsidyKey]billing.SubsidyCarry{},
		charges: map[string]billing.Charge{}, logged: map[string]map[string]int64{}, held: map[string]bool{},
		decision: map[string]string{}}
	var err error
	if r.base.Cards, err = a.st.RateCards(ctx, ""); err != nil {
		return err
	}
	if r.base.Entities, err = a.st.Entities(ctx); err != nil {
		return err
	}
	if r.base.Programs, err = a.st.Programs(ctx); err != nil {
		return err
	}
	mappings, err := a.st.TenantMappings(ctx, "")
	if err != nil {
		return err
	}
	r.base.Tenants = map[billing.TenantKey]string{}
	for _, m := range mappings {
		r.base.Tenants[billing.TenantKey{Provider: m.Provider, Tenant: m.Tenant}] = m.Entity
	}
	for _, v := range a.tables["vouchers"] {
		r.meta[v["id"]] = v
	}
	for _, l := range a.leaves {
		switch l.kind {
		case tlog.KindVoucher:
			m, err := store.ParseVoucherLeaf(l.data)
			if err != nil {
				a.diff("log_leaves", fmt.Sprintf("idx=%d", l.index), "data", fmt.Sprintf("%q", l.data), "a voucher leaf ("+err.Error()+")")
				continue
			}
			a.move(r, l.index, m)
		case tlog.KindBatch:
			if b := a.byLeaf[l.index]; b != nil {
				if err := r.bill(b); err != nil {
					return fmt.Errorf("audit: %w", err)
				}
			}
		}
	}
	a.compareCharges(r)
	a.compareVouchers(r)
	a.compareCarries(r)
	return nil
}

// move applies one voucher movement of the log.
func (a *auditor) move(r *replay, idx uint64, m store.VoucherMovement) {
	switch m.Movement {
	case store.MoveIssue:
		meta, ok := r.meta[m.Voucher]
		if !ok {
			a.diff("vouchers", "id="+m.Voucher, "row", "absent", fmt.Sprintf("issued by log leaf %d", idx))
			return
		}
		issued, _ := strconv.ParseInt(meta["issued_ms"], 10, 64)
		r.vouchers[m.Voucher] = &billing.Voucher{ID: m.Voucher, Program: meta["program_id"], Holder: m.Entity,
			Face: billing.Fen(m.AmountFen), Balance: billing.Fen(m.AmountFen), Issued: time.UnixMilli(issued).UTC(),
			Expires: time.UnixMilli(m.ExpiresMs).UTC(), Status: billing.VoucherActive}
		r.order = append(r.order, m.Voucher)
	case store.MoveActivate, store.MoveSuspend, store.MoveRevoke:
		if v := r.vouchers[m.Voucher]; v != nil {
			v.Status = map[string]string{store.MoveActivate: billing.VoucherActive, store.MoveSuspend: billing.VoucherSuspended,
				store.MoveRevoke: billing.VoucherRevoked}[m.Movement]
		}
	case store.MoveCharge, store.MoveHold:
		if r.logged[m.Record] == nil {
			r.logged[m.Record] = map[string]int64{}
		}
		r.logged[m.Record][m.Voucher] += m.AmountFen
		r.held[m.Record] = r.held[m.Record] || m.Movement == store.MoveHold
	case store.MoveRelease:
		r.decision[m.Record] = billing.ReviewApproved
	case store.MoveReturn:
		if r.decision[m.Record] != billing.ReviewRejected {
			r.decision[m.Record] = billing.ReviewRejected
			r.giveBack(m.Record)
		}
	}
}

// giveBack returns a rejected record's recomputed grants to its vouchers
// and its program's yearly counter, as RejectReview does.
func (r *replay) giveBack(record string) {
	c, ok := r.charges[record]
	if !ok {
		return
	}
	for _, g := range c.Grants {
		if v := r.vouchers[g.Voucher]; v != nil {
			v.Balance += g.Amount
		}
	}
	k := billing.SubsidyKey{Program: c.Program, Entity: c.Entity, Year: billing.Year(c.WindowStart)}
	sc := r.subsidy[k]
	sc.Granted -= c.Subsidy
	r.subsidy[k] = sc
}

// bill bills a batch's usage records as the store's ingest does: by the
// model table's model and slice, in window order then seq.
func (r *replay) bill(b *protocol.Batch) error {
	type item struct {
		u   billing.Usage
		seq uint64
	}
	var items []item
	for i := range b.Records {
		rec := &b.Records[i]
		if rec.Kind != protocol.KindUsage {
			continue
		}
		m, ok := inventory.Lookup(rec.Model)
		if !ok {
			return fmt.Errorf("record %s: model %q is not in the model table", rec.ID, rec.Model)
		}
		num, den, ok := m.Slice(rec.MIGProfile)
		if !ok {
			return fmt.Errorf("record %s: %s has no MIG profile %q", rec.ID, m.ID, rec.MIGProfile)
		}
		items = append(items, item{seq: rec.Seq, u: billing.Usage{RecordID: rec.ID, Provider: rec.Provider, Tenant: rec.Tenant,
			Model: m.ID, MIGProfile: rec.MIGProfile, SliceNum: int64(num), SliceDen: int64(den),
			WindowStart: rec.WindowStart, GPUMillis: rec.GPUMillis}})
	}
	if len(items) == 0 {
		return nil
	}
	sort.Slice(items, func(i, j int) bool {
		return billing.BillsFirst(items[i].u, items[i].seq, items[j].u, items[j].seq)
	})
	st := r.base
	st.CostCarries, st.SubsidyCarries = r.cost, r.subsidy
	for _, id := range r.order {
		st.Vouchers = append(st.Vouchers, *r.vouchers[id])
	}
	book := billing.NewBook(st)
	for _, it := range items {
		c, err := book.Bill(it.u)
		if err != nil {
			return err
		}
		r.charges[c.RecordID] = c
	}
	ch := book.Changes()
	for _, v := range ch.Vouchers {
		r.vouchers[v.ID].Balance = v.Balance
	}
	for k, v := range ch.CostCarries {
		r.cost[k] = v
	}
	for k, v := range ch.SubsidyCarries {
		r.subsidy[k] = v
	}
	return nil
}

// compareCharges checks charges, grants and the log's charge leaves
// against the recomputed charges.
func (a *auditor) compareCharges(r *replay) {
	stored := map[string]store.AuditRow{}
	for _, c := range a.tables["charges"] {
		stored[c["record_id"]] = c
	}
	grants := map[string]map[string]string{}
	for _, g := range a.tables["grants"] {
		if grants[g["record_id"]] == nil {
			grants[g["record_id"]] = map[string]string{}
		}
		grants[g["record_id"]][g["voucher_id"]] = g["amount_fen"]
	}
	for _, id := range slices.Sorted(maps.Keys(r.charges)) {
		c := r.charges[id]
		key := "record_id=" + id
		review := r.decision[id]
		if review == "" && r.held[id] {
			review = billing.ReviewHeld
		}
		subsidy, want := c.Subsidy, map[string]string{}
		if review == billing.ReviewRejected {
			subsidy = 0
		} else {
			for _, g := range c.Grants {
				want[g.Voucher] = strconv.FormatInt(int64(g.Amount), 10)
			}
		}
		// The log's movements are checked whatever the period: they are
		// what vouchers' balances are made of.
		logged := map[string]string{}
		for v, amt := range r.logged[id] {
			logged[v] = strconv.FormatInt(amt, 10)
		}
		for _, g := range c.Grants {
			if got := logged[g.Voucher]; got != strconv.FormatInt(int64(g.Amount), 10) {
				a.diff("log_leaves", key+", voucher="+g.Voucher, "amount_fen (charge or hold)", quote(got), strconv.FormatInt(int64(g.Amount), 10))
			}
			delete(logged, g.Voucher)
		}
		for v, got := range logged {
			a.diff("log_leaves", key+", voucher="+v, "amount_fen (charge or hold)", got, "absent: the recomputed charge has no such grant")
		}
		s, ok := stored[id]
		delete(stored, id)
		ws := strconv.FormatInt(c.WindowStart.UnixMilli(), 10)
		if !a.opt.inPeriod(ws) {
			continue
		}
		if !ok {
			a.diff("charges", key, "row", "absent", fmt.Sprintf("cost %d fen, subsidy %d fen", c.Cost, subsidy))
			continue
		}
		a.compare("charges", key, s, store.AuditRow{"provider": c.Provider, "tenant": c.Tenant, "entity_id": c.Entity,
			"window_start_ms": ws, "rate_card_id": c.RateCard, "cost_fen": strconv.FormatInt(int64(c.Cost), 10),
			"subsidy_fen": strconv.FormatInt(int64(subsidy), 10), "program_id": c.Program, "note": c.Note, "review": review},
			store.AuditColumns("charges")[1:]...)
		for v, amt := range want {
			if got, ok := grants[id][v]; !ok || got != amt {
				a.diff("grants", key+", voucher_id="+v, "amount_fen", orAbsent(got, ok), amt)
			}
			delete(grants[id], v)
		}
		for v, got := range grants[id] {
			a.diff("grants", key+", voucher_id="+v, "amount_fen", got, "absent")
		}
		delete(grants, id)
	}
	for id, s := range stored {
		if a.opt.inPeriod(s["window_start_ms"]) {
			a.diff("charges", "record_id="+id, "row", "present", "absent: no stored usage record in the log's batches")
		}
	}
}

func orAbsent(s string, ok bool) string {
	if !ok {
		return "absent"
	}
	return s
}

// compareVouchers checks every voucher's face, holder, expiry, balance
// and status against the replay.
func (a *auditor) compareVouchers(r *replay) {
	for _, row := range a.tables["vouchers"] {
		key := "id=" + row["id"]
		v, ok := r.vouchers[row["id"]]
		if !ok {
			a.diff("vouchers", key, "row", "present", "absent: no issue leaf in the log")
			continue
		}
		a.compare("vouchers", key, row, store.AuditRow{"entity_id": v.Holder, "face_fen": strconv.FormatInt(int64(v.Face), 10),
			"balance_fen": strconv.FormatInt(int64(v.Balance), 10), "expires_ms": strconv.FormatInt(v.Expires.UnixMilli(), 10),
			"status": v.Status}, "entity_id", "face_fen", "balance_fen", "expires_ms", "status")
	}
}

// compareCarries checks the rounding carries and the yearly counters.
func (a *auditor) compareCarries(r *replay) {
	for _, row := range a.tables["subsidy_carries"] {
		year, _ := strconv.Atoi(row["year"])
		k := billing.SubsidyKey{Program: row["program_id"], Entity: row["entity_id"], Year: year}
		c, ok := r.subsidy[k]
		key := store.AuditKey("subsidy_carries", row)
		if !ok {
			a.diff("subsidy_carries", key, "row", "present", "absent: no recomputed grant")
			continue
		}
		a.compare("subsidy_carries", key, row, store.AuditRow{"remainder": strconv.FormatInt(c.Remainder, 10),
			"granted_fen": strconv.FormatInt(int64(c.Granted), 10)}, "remainder", "granted_fen")
		delete(r.subsidy, k)
	}
	for k, c := range r.subsidy {
		a.diff("subsidy_carries", fmt.Sprintf("program_id=%s, entity_id=%s, year=%d", k.Program, k.Entity, k.Year), "row", "absent",
			fmt.Sprintf("granted %d fen", c.Granted))
	}
	for _, row := range a.tables["cost_carries"] {
		den, _ := strconv.ParseInt(row["slice_den"], 10, 64)
		k := billing.CostKey{Provider: row["provider"], Tenant: row["tenant"], RateCard: row["rate_card_id"], SliceDen: den, Month: row["period"]}
		key := store.AuditKey("cost_carries", row)
		c, ok := r.cost[k]
		if !ok {
			a.diff("cost_carries", key, "row", "present", "absent: no recomputed cost")
			continue
		}
		a.compare("cost_carries", key, row, store.AuditRow{"remainder": strconv.FormatInt(c, 10)}, "remainder")
		delete(r.cost, k)
	}
	for k, c := range r.cost {
		a.diff("cost_carries", fmt.Sprintf("provider=%s, tenant=%s, rate_card_id=%s, slice_den=%d, period=%s", k.Provider, k.Tenant, k.RateCard, k.SliceDen, k.Month),
			"row", "absent", fmt.Sprintf("remainder %d", c))
	}
}
