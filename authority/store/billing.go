package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// bill prices and subsidizes the usage records of a batch being stored, in
// the ingest transaction (docs/billing.md), after its records are
// inserted: a batch is billed exactly when it is stored, so a resend (a
// duplicate, which stores nothing) bills nothing.
//
// It loads the state once per batch (tenant mappings, cards in force,
// entities, vouchers, programs, carries), lets billing.Book bill the
// records in window order, and writes the charges, grants, balances and
// carries back. On PostgreSQL two processes ingesting at once serialize on
// the rows they change; the locks are taken in one order, after the
// node's and units' locks of Ingest:
//
//  1. the cards read, FOR SHARE: a card cannot be ended under an ingest
//     that prices with it (EndRateCard takes it FOR UPDATE);
//  2. the entities billed, by id, FOR UPDATE: everything a subsidy
//     changes (vouchers, yearly and lifetime counters) is the entity's, so
//     this lock alone serializes subsidies to one entity;
//  3. their vouchers that may pay, by id, FOR UPDATE;
//  4. their subsidy carries, FOR UPDATE;
//  5. the budget counters of their programs that have a budget, by
//     program and year (upserted, which locks): a program's budget is
//     shared by all its entities, so this serializes its subsidies;
//  6. the cost carries, by key (upserted, which locks).
//
// Every transaction that takes two of these takes them in this order, so
// none can deadlock another.
func (s *Store) bill(ctx context.Context, tx *sql.Tx, b *protocol.Batch, vs []RecordVerdict, now time.Time) error {
	type item struct {
		u    billing.Usage
		seq  uint64
		hold string
	}
	var items []item
	for i := range b.Records {
		r := &b.Records[i]
		if r.Kind != protocol.KindUsage {
			continue // idle and gap records are never billed
		}
		// Priced by the authority's facts (the registered model, the model
		// table's slice), never by the record's own model and slice fields.
		v := vs[i]
		items = append(items, item{seq: r.Seq, hold: v.Hold, u: billing.Usage{RecordID: r.ID, Provider: r.Provider, Tenant: r.Tenant,
			Model: v.Model, MIGProfile: r.MIGProfile, SliceNum: v.SliceNum, SliceDen: v.SliceDen,
			WindowStart: r.WindowStart, WindowEnd: r.WindowEnd, GPUMillis: r.GPUMillis}})
	}
	if len(items) == 0 {
		return nil
	}
	sort.Slice(items, func(i, j int) bool {
		return billing.BillsFirst(items[i].u, items[i].seq, items[j].u, items[j].seq)
	})
	what := fmt.Sprintf("bill batch %d of node %q", b.FirstSeq, b.Node)
	ld := &billLoad{s: s, tx: tx, first: items[0].u.WindowStart, last: items[0].u.WindowStart}
	for _, it := range items {
		ld.first = minTime(ld.first, it.u.WindowStart)
		// A record may be split at a boundary inside its window: what is
		// in force anywhere in it is loaded.
		ld.last = maxTime(ld.last, maxTime(it.u.WindowStart, it.u.WindowEnd))
	}
	usages := make([]billing.Usage, len(items))
	for i, it := range items {
		usages[i] = it.u
	}
	st, err := ld.load(ctx, usages)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	book := billing.NewBook(st)
	charges := make([]billing.Charge, len(usages))
	for i, u := range usages {
		if charges[i], err = book.Bill(u); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	holds := map[string]string{}
	for _, it := range items {
		if it.hold != "" {
			holds[it.u.RecordID] = it.hold
		}
	}
	s.saveBilling(tx, what+": ", charges, book.Changes(), holds)
	s.logCharges(tx, charges, holds, now)
	s.holdForReview(tx, what+": ", b.Node, charges, holds, now)
	return nil
}

// holdForReview queues the charges whose subsidy is held (held_fen is the
// subsidy granted, which stays taken from the vouchers until an operator
// approves or rejects it) for review. what prefixes errors.
func (s *Store) holdForReview(tx *sql.Tx, what, node string, charges []billing.Charge, holds map[string]string, now time.Time) {
	if len(holds) == 0 {
		return
	}
	var rows [][]any
	for _, c := range charges {
		reason, ok := holds[c.RecordID]
		if !ok {
			continue
		}
		rows = append(rows, []any{c.RecordID, node, c.Provider, c.Tenant, c.Entity, c.WindowStart.UnixMilli(),
			reason, int64(c.Subsidy), ReviewHeld, now.UnixMilli()})
	}
	s.queueRows(tx, what+"queue held subsidies for review", "reviews", `record_id, node_id, provider, tenant, entity_id, window_start_ms,
		reason, held_fen, status, created`, rows, nil)
}

// Review states of a charge (charges.review) and of a review row.
const (
	ReviewHeld     = "held"
	ReviewApproved = "approved"
	ReviewRejected = "rejected"
)

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// billLoad reads (and locks) a batch's billing state.
type billLoad struct {
	s  *Store
	tx *sql.Tx
	// first is the earliest window start of the batch's usage, last the
	// latest window end: billing reads what is in force in between.
	first, last time.Time
}

// forShare is the lock a row read for pricing takes: FOR SHARE on
// PostgreSQL (many ingests may hold it, an operator ending the card waits
// for them); nothing on SQLite, whose write lock serializes everything.
func (s *Store) forShare() string {
	if s.d.forUpdate == "" {
		return ""
	}
	return " FOR SHARE"
}

func (l *billLoad) load(ctx context.Context, usages []billing.Usage) (billing.State, error) {
	st := billing.State{Tenants: map[billing.TenantKey]string{}, CostCarries: map[billing.CostKey]int64{},
		SubsidyCarries: map[billing.SubsidyKey]billing.SubsidyCarry{}}
	var err error
	if st.Tenants, err = l.tenants(ctx, usages); err != nil {
		return st, err
	}
	if st.Cards, err = l.cards(ctx, usages); err != nil {
		return st, err
	}
	// Which carries and entities the batch can touch: those of priced
	// records (an unpriced one changes nothing).
	ix := billing.NewCardIndex(st.Cards)
	costKeys := map[billing.CostKey]bool{}
	entitySet := map[string]bool{}
	for _, u := range usages {
		// A piece of a split record may be priced by another card, in
		// another month: cut at every card boundary to find its keys.
		for _, pu := range billing.Split(u, ix.Bounds(u)) {
			p, ok := ix.Price(pu)
			if !ok {
				continue
			}
			costKeys[p.Key] = true
			if e, ok := st.Tenants[billing.TenantKey{Provider: u.Provider, Tenant: u.Tenant}]; ok {
				entitySet[e] = true
			}
		}
	}
	entities := make([]string, 0, len(entitySet))
	for e := range entitySet {
		entities = append(entities, e)
	}
	sort.Strings(entities)
	programSet := map[string]bool{}
	for _, id := range entities {
		e, err := l.entity(ctx, id)
		if err != nil {
			return st, err
		}
		st.Entities = append(st.Entities, e)
		vs, err := l.vouchers(ctx, id)
		if err != nil {
			return st, err
		}
		st.Vouchers = append(st.Vouchers, vs...)
		for _, v := range vs {
			programSet[v.Program] = true
		}
	}
	programs := make([]string, 0, len(programSet))
	for p := range programSet {
		programs = append(programs, p)
	}
	sort.Strings(programs)
	if st.Programs, err = l.s.readPrograms(ctx, l.tx, programs); err != nil {
		return st, err
	}
	// Every year of each (program, entity) that may pay: the lifetime cap
	// sums them.
	pairs := map[[2]string]bool{}
	for _, v := range st.Vouchers {
		pairs[[2]string{v.Program, v.Holder}] = true
	}
	for _, pe := range sortedPairs(pairs) {
		if err := l.subsidyCarries(ctx, pe[0], pe[1], st.SubsidyCarries); err != nil {
			return st, err
		}
	}
	if st.Budgets, err = l.budgets(ctx, st.Programs); err != nil {
		return st, err
	}
	for _, k := range billing.SortedCostKeys(costKeys) {
		var r int64
		err := l.s.queryRowTx(ctx, l.tx, `INSERT INTO cost_carries (provider, tenant, rate_card_id, slice_den, period, remainder)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (provider, tenant, rate_card_id, slice_den, period) DO UPDATE SET remainder = cost_carries.remainder
			RETURNING remainder`, k.Provider, k.Tenant, k.RateCard, k.SliceDen, k.Month, billing.InitialCostCarry(k.SliceDen)).Scan(&r)
		if err != nil {
			return st, fmt.Errorf("lock cost carry %+v: %w", k, err)
		}
		st.CostCarries[k] = r
	}
	return st, nil
}

func sortedPairs(m map[[2]string]bool) [][2]string {
	out := make([][2]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][0] != out[j][0] {
			return out[i][0] < out[j][0]
		}
		return out[i][1] < out[j][1]
	})
	return out
}

// tenants reads the entity of each (provider, tenant) of the batch, in
// one statement per chunk of pairs (not one per pair: on PostgreSQL each
// is a round trip).
func (l *billLoad) tenants(ctx context.Context, usages []billing.Usage) (map[billing.TenantKey]string, error) {
	out := map[billing.TenantKey]string{}
	seen := map[billing.TenantKey]bool{}
	var keys []billing.TenantKey
	for _, u := range usages {
		k := billing.TenantKey{Provider: u.Provider, Tenant: u.Tenant}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for len(keys) > 0 {
		n := min(len(keys), lookupChunk)
		var q strings.Builder
		q.WriteString(`SELECT provider, tenant, entity_id FROM tenant_entities WHERE `)
		args := make([]any, 0, 2*n)
		for i, k := range keys[:n] {
			if i > 0 {
				q.WriteString(" OR ")
			}
			q.WriteString("(provider = ? AND tenant = ?)")
			args = append(args, k.Provider, k.Tenant)
		}
		if err := l.readTenants(ctx, q.String(), args, out); err != nil {
			return nil, err
		}
		keys = keys[n:]
	}
	return out, nil
}

func (l *billLoad) readTenants(ctx context.Context, q string, args []any, into map[billing.TenantKey]string) error {
	rows, err := l.tx.QueryContext(ctx, l.s.d.rebind(q), args...)
	if err != nil {
		return fmt.Errorf("read tenant mappings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k billing.TenantKey
		var e string
		if err := rows.Scan(&k.Provider, &k.Tenant, &e); err != nil {
			return fmt.Errorf("read tenant mappings: %w", err)
		}
		into[k] = e
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read tenant mappings: %w", err)
	}
	return nil
}

// cards reads the cards of the batch's providers in force at some window
// start of the batch.
func (l *billLoad) cards(ctx context.Context, usages []billing.Usage) ([]billing.RateCard, error) {
	providers := map[string]bool{}
	for _, u := range usages {
		providers[u.Provider] = true
	}
	var out []billing.RateCard
	for _, p := range sortedKeys(providers) {
		rows, err := l.tx.QueryContext(ctx, l.s.d.rebind(`SELECT `+rateCardColumns+` FROM rate_cards
			WHERE provider = ? AND valid_from_ms <= ? AND valid_to_ms > ? ORDER BY id`+l.s.forShare()),
			p, l.last.UnixMilli(), l.first.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("read rate cards of %q: %w", p, err)
		}
		for rows.Next() {
			c, err := scanRateCard(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("read rate cards of %q: %w", p, err)
			}
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read rate cards of %q: %w", p, err)
		}
	}
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// entity locks an entity's row and reads it with its related providers.
func (l *billLoad) entity(ctx context.Context, id string) (billing.Entity, error) {
	e := billing.Entity{ID: id}
	if err := l.s.queryRowTx(ctx, l.tx, `SELECT name FROM entities WHERE id = ?`+l.s.d.forUpdate, id).Scan(&e.Name); err != nil {
		return e, fmt.Errorf("lock entity %q: %w", id, err)
	}
	rows, err := l.tx.QueryContext(ctx, l.s.d.rebind(`SELECT provider FROM entity_related_providers WHERE entity_id = ?`), id)
	if err != nil {
		return e, fmt.Errorf("read entity %q: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return e, fmt.Errorf("read entity %q: %w", id, err)
		}
		e.RelatedProviders = append(e.RelatedProviders, p)
	}
	if err := rows.Err(); err != nil {
		return e, fmt.Errorf("read entity %q: %w", id, err)
	}
	rows.Close()
	e.Categories, err = l.s.entityCategories(ctx, l.tx, id)
	return e, err
}

// budgets locks and reads the budget counters of the programs with a
// budget, for every year of the batch, creating those not there yet.
func (l *billLoad) budgets(ctx context.Context, programs []billing.Program) (map[billing.BudgetKey]billing.Fen, error) {
	out := map[billing.BudgetKey]billing.Fen{}
	for _, p := range programs { // sorted by id
		if p.BudgetPerYear == 0 {
			continue
		}
		for y := billing.Year(l.first); y <= billing.Year(l.last); y++ {
			var granted int64
			err := l.s.queryRowTx(ctx, l.tx, `INSERT INTO program_budgets (program_id, year, granted_fen) VALUES (?, ?, 0)
				ON CONFLICT (program_id, year) DO UPDATE SET granted_fen = program_budgets.granted_fen
				RETURNING granted_fen`, p.ID, y).Scan(&granted)
			if err != nil {
				return nil, fmt.Errorf("lock the %d budget of program %q: %w", y, p.ID, err)
			}
			out[billing.BudgetKey{Program: p.ID, Year: y}] = billing.Fen(granted)
		}
	}
	return out, nil
}

// vouchers locks and reads entity's vouchers that may pay for the batch:
// active, with a balance, and valid at some window start of it.
func (l *billLoad) vouchers(ctx context.Context, entity string) ([]billing.Voucher, error) {
	rows, err := l.tx.QueryContext(ctx, l.s.d.rebind(`SELECT `+voucherColumns+` FROM vouchers
		WHERE entity_id = ? AND status = ? AND balance_fen > 0 AND issued_ms <= ? AND expires_ms > ?
		ORDER BY id`+l.s.d.forUpdate), entity, billing.VoucherActive, l.last.UnixMilli(), l.first.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("lock vouchers of %q: %w", entity, err)
	}
	defer rows.Close()
	var out []billing.Voucher
	for rows.Next() {
		v, err := scanVoucher(rows)
		if err != nil {
			return nil, fmt.Errorf("lock vouchers of %q: %w", entity, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock vouchers of %q: %w", entity, err)
	}
	return out, nil
}

// subsidyCarries locks and reads every year's carry of (program, entity).
func (l *billLoad) subsidyCarries(ctx context.Context, program, entity string, into map[billing.SubsidyKey]billing.SubsidyCarry) error {
	rows, err := l.tx.QueryContext(ctx, l.s.d.rebind(`SELECT year, remainder, granted_fen FROM subsidy_carries
		WHERE program_id = ? AND entity_id = ? ORDER BY year`+l.s.d.forUpdate), program, entity)
	if err != nil {
		return fmt.Errorf("lock subsidy carries of %q, %q: %w", program, entity, err)
	}
	defer rows.Close()
	for rows.Next() {
		var year, rem, granted int64
		if err := rows.Scan(&year, &rem, &granted); err != nil {
			return fmt.Errorf("lock subsidy carries of %q, %q: %w", program, entity, err)
		}
		into[billing.SubsidyKey{Program: program, Entity: entity, Year: int(year)}] = billing.SubsidyCarry{Remainder: rem, Granted: billing.Fen(granted)}
	}
	return rows.Err()
}

// saveBilling queues the writes of the charges and grants and of what
// billing changed (pipeline.go). what prefixes errors.
func (s *Store) saveBilling(tx *sql.Tx, what string, charges []billing.Charge, ch billing.Changes, holds map[string]string) {
	var crow, grow, prow [][]any
	for _, c := range charges {
		review := ""
		if _, ok := holds[c.RecordID]; ok {
			review = ReviewHeld
		}
		crow = append(crow, []any{c.RecordID, c.Provider, c.Tenant, c.Entity, c.WindowStart.UnixMilli(),
			c.RateCard, int64(c.Cost), int64(c.Subsidy), c.Program, c.Note, review, c.Limit})
		for _, g := range c.Grants {
			grow = append(grow, []any{c.RecordID, g.Voucher, int64(g.Amount)})
		}
		for i, p := range c.Pieces {
			prow = append(prow, []any{c.RecordID, i, p.Start.UnixMilli(), p.End.UnixMilli(), p.GPUMillis,
				p.RateCard, int64(p.Cost), int64(p.Subsidy), p.Program, p.Note, p.Limit})
		}
	}
	s.queueRows(tx, what+"store charges", "charges", `record_id, provider, tenant, entity_id, window_start_ms,
		rate_card_id, cost_fen, subsidy_fen, program_id, note, review, limit_by`, crow, nil)
	s.queueRows(tx, what+"store the pieces of split charges", "charge_pieces", `record_id, piece, start_ms, end_ms, gpu_ms,
		rate_card_id, cost_fen, subsidy_fen, program_id, note, limit_by`, prow, nil)
	s.queueRows(tx, what+"store grants", "grants", `record_id, voucher_id, amount_fen`, grow, nil)
	// A voucher's charge: its balance, and its first use (and the expiry
	// a term from first use sets then).
	for _, v := range ch.Vouchers {
		s.queue(tx, fmt.Sprintf("%supdate balance of voucher %q", what, v.ID),
			`UPDATE vouchers SET balance_fen = ?, first_use_ms = ?, expires_ms = ? WHERE id = ?`,
			int64(v.Balance), optMs(v.FirstUse), v.Expires.UnixMilli(), v.ID)
	}
	for k, f := range ch.Budgets {
		s.queue(tx, fmt.Sprintf("%supdate the %d budget of program %q", what, k.Year, k.Program),
			`UPDATE program_budgets SET granted_fen = ? WHERE program_id = ? AND year = ?`, int64(f), k.Program, k.Year)
	}
	for k, c := range ch.SubsidyCarries {
		s.queue(tx, fmt.Sprintf("%supdate subsidy carry %+v", what, k), `INSERT INTO subsidy_carries (program_id, entity_id, year, remainder, granted_fen)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (program_id, entity_id, year) DO UPDATE SET remainder = excluded.remainder, granted_fen = excluded.granted_fen`,
			k.Program, k.Entity, k.Year, c.Remainder, int64(c.Granted))
	}
	for k, r := range ch.CostCarries {
		s.queue(tx, fmt.Sprintf("%supdate cost carry %+v", what, k), `UPDATE cost_carries SET remainder = ?
			WHERE provider = ? AND tenant = ? AND rate_card_id = ? AND slice_den = ? AND period = ?`,
			r, k.Provider, k.Tenant, k.RateCard, k.SliceDen, k.Month)
	}
}

// maxStatementParams bounds the parameters of one statement, below
// SQLite's 32766 and PostgreSQL's 65535.
const maxStatementParams = 30000

// lookupChunk bounds the values one IN lookup names: (provider, tenant)
// pairs, record ids.
const lookupChunk = 1000
