package store

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestStatementsEqualTheLedger ingests random usage over two programs with
// small vouchers and caps, then checks statements and claims against the
// tables behind them: lines sum to totals, totals equal the charges, each
// voucher's claimed total is what left its balance, monthly statements
// add up to the whole period's, and each month's cost per tenant and card
// is its exact total rounded.
func TestStatementsEqualTheLedger(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		billSetup(t, s)
		must(t, s.PutEntity(ctx, billing.Entity{ID: "E2"}))
		must(t, s.MapTenant(ctx, "p1", "globex", "E2"))
		must(t, s.AddRateCard(ctx, billing.RateCard{ID: "910b", Provider: "p1", Model: "H20-96GB", PricePerHour: 777, ValidFrom: y2026}))
		must(t, s.AddProgram(ctx, testProgram("P1", func(p *billing.Program) { p.Ratio, p.CapPerYear = 3000, 3_000 })))
		must(t, s.AddProgram(ctx, testProgram("P2", func(p *billing.Program) {
			p.Ratio, p.Rounding, p.Models = 5000, billing.RoundTruncate, []string{"H20-96GB"}
		})))
		faces := map[string]billing.Fen{}
		for _, v := range []billing.Voucher{
			testVoucher("a1", "P1", "E1", 1_500, mar2027), testVoucher("a2", "P1", "E1", 20_000, y2028),
			testVoucher("a3", "P2", "E1", 3_000, jun2027), testVoucher("b1", "P1", "E2", 9_000, y2028),
			testVoucher("b2", "P2", "E2", 50_000, jan2027),
		} {
			must(t, s.IssueVoucherAt(ctx, v, y2026))
			faces[v.ID] = v.Face
		}
		n := newBillNode(t, s, "n1")
		rng := rand.New(rand.NewPCG(4, 4))
		// Three months of 10-minute windows on 4 GPUs, sent in batches.
		var all []protocol.Record
		start := bt.Add(-24 * time.Hour)
		var recs []protocol.Record
		for w := 0; w < 3*30*24*6; w += 1 + rng.IntN(80) {
			at := start.Add(time.Duration(w) * 10 * time.Minute)
			for g := 1; g <= 4; g++ {
				if rng.IntN(3) == 0 {
					continue
				}
				r := n.use(g, at, 10*time.Minute, []string{"acme", "globex", "stranger"}[rng.IntN(3)], rng.Int64N(600_001))
				switch rng.IntN(5) {
				case 0:
					r.Model = "H20-96GB"
				case 1:
					r.Model = "A100-SXM4-80GB" // no card
				case 2:
					r.GPUUUID, r.MIGProfile, r.SliceNum, r.SliceDen = fmt.Sprintf("MIG-00000000-0000-4000-9000-%012d", g), "2g.20gb", 2, 7
				}
				recs = append(recs, r)
			}
			if len(recs) >= 12 {
				all = append(all, n.ingest(recs...).Batch.Records...)
				recs = nil
			}
		}
		if len(all) < 500 {
			t.Fatalf("only %d records", len(all))
		}

		// Statements: lines sum to totals, totals equal the charges.
		for _, e := range []string{"E1", "E2"} {
			st, err := s.Statement(ctx, e, y2026, y2028)
			must(t, err)
			var sum billing.Totals
			for _, l := range st.Lines {
				var g billing.Fen
				for _, gr := range l.Grants {
					g += gr.Amount
				}
				if g != l.Subsidy || l.Payable != l.Cost-l.Subsidy || l.Entity != e {
					t.Fatalf("line %+v: grants %d", l, g)
				}
				sum.Records++
				sum.GPUMillis += l.GPUMillis
				sum.Cost += l.Cost
				sum.Subsidy += l.Subsidy
				sum.Payable += l.Payable
				// after_settlement: the tenant pays the whole cost and is
				// reimbursed the subsidy.
				if l.Reimbursed != l.Subsidy || l.TenantPaysProvider != l.Cost || l.ProviderClaims != 0 {
					t.Fatalf("line %+v: settlement amounts", l)
				}
				sum.TenantPaysProvider += l.TenantPaysProvider
				sum.Reimbursed += l.Reimbursed
				if len(l.Pieces) > 1 {
					sum.SplitRecords++
				}
				switch l.Limit {
				case billing.LimitYearCap, billing.LimitLifetime:
					sum.CapRecords++
				}
				if l.Note == billing.NoteUnpriced {
					sum.Unpriced++
				}
			}
			var n, cost, sub, unpriced int64
			must(t, s.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(cost_fen), 0), COALESCE(SUM(subsidy_fen), 0),
				COALESCE(SUM(CASE WHEN note = 'unpriced' THEN 1 ELSE 0 END), 0) FROM charges WHERE entity_id = ?`, e).
				Scan(&n, &cost, &sub, &unpriced))
			if sum != st.Totals || int64(st.Totals.Records) != n || int64(st.Totals.Cost) != cost ||
				int64(st.Totals.Subsidy) != sub || int64(st.Totals.Unpriced) != unpriced {
				t.Fatalf("%s: lines sum to %+v, totals %+v, charges %d records %d cost %d subsidy %d unpriced", e, sum, st.Totals, n, cost, sub, unpriced)
			}
			if st.Totals.Subsidy == 0 || st.Totals.Unpriced == 0 {
				t.Errorf("%s: the random usage did not reach subsidies and unpriced records: %+v", e, st.Totals)
			}
			// Monthly statements add up to the whole period's.
			var months billing.Totals
			for m := start; m.Before(y2028); m = m.AddDate(0, 1, 0) {
				ms, err := s.Statement(ctx, e, m, m.AddDate(0, 1, 0))
				must(t, err)
				months.Records += ms.Totals.Records
				months.Cost += ms.Totals.Cost
				months.Subsidy += ms.Totals.Subsidy
				months.TenantPaysProvider += ms.Totals.TenantPaysProvider
				months.Reimbursed += ms.Totals.Reimbursed
			}
			months.GPUMillis, months.Payable, months.Unpriced = st.Totals.GPUMillis, st.Totals.Payable, st.Totals.Unpriced
			months.SplitRecords, months.CapRecords = st.Totals.SplitRecords, st.Totals.CapRecords
			if months != st.Totals {
				t.Errorf("%s: months sum to %+v, the period is %+v", e, months, st.Totals)
			}
			// The CSV has a row per line.
			var buf bytes.Buffer
			must(t, billing.WriteLinesCSV(&buf, st.Lines))
			rows, err := csv.NewReader(&buf).ReadAll()
			if err != nil || len(rows) != len(st.Lines)+1 {
				t.Errorf("%s: CSV rows %d, %v; want %d", e, len(rows), err, len(st.Lines)+1)
			}
		}

		// The claim: every record once, and per voucher what left its balance.
		c, err := s.Claim(ctx, "p1", y2026, y2028)
		must(t, err)
		if len(c.Lines) != countUsage(all) {
			t.Fatalf("claim has %d lines, %d usage records were stored", len(c.Lines), countUsage(all))
		}
		var claimed billing.Fen
		byVoucher := map[string]billing.Fen{}
		for _, ct := range c.ByVoucher {
			byVoucher[ct.Voucher] = ct.Amount
			claimed += ct.Amount
		}
		for id, face := range faces {
			if b := balance(t, s, id); face-b != byVoucher[id] || b < 0 {
				t.Errorf("voucher %s: face %d, balance %d, claimed %d", id, face, b, byVoucher[id])
			}
		}
		if claimed != c.Totals.Subsidy {
			t.Errorf("claimed per voucher %d, subsidy total %d", claimed, c.Totals.Subsidy)
		}
		checkYearCounters(t, s, c.Lines)
		// The usage reached the rules' edges: a1 ran out, and P1's yearly
		// cap let P2 pay for E1's 910B usage.
		if balance(t, s, "a1") != 0 || balance(t, s, "a3") == faces["a3"] {
			t.Errorf("a1 balance %d, a3 balance %d: the scenario no longer drains a voucher or reaches a cap",
				balance(t, s, "a1"), balance(t, s, "a3"))
		}

		// Costs: per (tenant, card, slice, month), the exact total rounded.
		exact := map[billing.CostKey]*big.Int{}
		billed := map[billing.CostKey]billing.Fen{}
		price := map[string]int64{"h100": 1000, "910b": 777}
		for _, l := range c.Lines {
			if l.RateCard == "" {
				continue
			}
			num, den := int64(1), int64(1)
			if l.MIGProfile != "" {
				num, den = 2, 7
			}
			k := billing.CostKey{Provider: l.Provider, Tenant: l.Tenant, RateCard: l.RateCard, SliceDen: den, Month: billing.Month(l.WindowStart)}
			if exact[k] == nil {
				exact[k] = new(big.Int)
			}
			exact[k].Add(exact[k], big.NewInt(price[l.RateCard]*l.GPUMillis*num))
			billed[k] += l.Cost
		}
		for k, x := range exact {
			d := billing.CostDenominator(k.SliceDen)
			want := new(big.Int).Quo(new(big.Int).Add(x, big.NewInt(d/2)), big.NewInt(d))
			if want.Int64() != int64(billed[k]) {
				t.Errorf("%+v: billed %d, exact total rounded %s", k, billed[k], want)
			}
		}
	})
}

func countUsage(recs []protocol.Record) int {
	n := 0
	for _, r := range recs {
		if r.Kind == protocol.KindUsage {
			n++
		}
	}
	return n
}

// checkYearCounters: each (program, entity, year) counter holds the sum of
// that program's subsidies to the entity that year.
func checkYearCounters(t *testing.T, s *Store, lines []billing.Line) {
	t.Helper()
	want := map[billing.SubsidyKey]billing.Fen{}
	for _, l := range lines {
		if l.Program != "" {
			want[billing.SubsidyKey{Program: l.Program, Entity: l.Entity, Year: billing.Year(l.WindowStart)}] += l.Subsidy
		}
	}
	rows, err := s.query(context.Background(), `SELECT program_id, entity_id, year, granted_fen FROM subsidy_carries`)
	must(t, err)
	defer rows.Close()
	got := map[billing.SubsidyKey]billing.Fen{}
	for rows.Next() {
		var k billing.SubsidyKey
		var g int64
		must(t, rows.Scan(&k.Program, &k.Entity, &k.Year, &g))
		got[k] = billing.Fen(g)
	}
	must(t, rows.Err())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("year counters %v, subsidies per program, entity and year %v", got, want)
	}
}

// TestStatementAndClaimCoverage: a claim lists the coverage of all the
// provider's GPUs, a statement that of the GPUs the entity's usage ran on.
func TestStatementAndClaimCoverage(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		billSetup(t, s)
		n := newBillNode(t, s, "n1")
		for i := 1; i <= 4; i++ {
			setRegistered(t, s, n.gpu(i), bt.Add(-time.Hour))
		}
		n.ingest(n.hour(1, bt, "acme"), n.hour(2, bt.Add(time.Hour), "globex"))
		addGPUWindows(t, s, "n1", n.gpu(1), [2]time.Time{bt, bt.Add(time.Hour)})
		addGPUWindows(t, s, "n1", n.gpu(2), [2]time.Time{bt.Add(time.Hour), bt.Add(2 * time.Hour)})
		from, to := bt, bt.Add(2*time.Hour)

		st, err := s.Statement(ctx, "E1", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Coverage) != 1 {
			t.Fatalf("statement coverage %+v, want GPU 1's only (acme's usage ran there)", st.Coverage)
		}
		g := st.Coverage[0]
		if g.GPU != n.gpu(1) || g.ExpectedMillis != 7_200_000 || g.CoveredMillis != 3_600_000 || len(g.Holes) != 1 ||
			!g.Holes[0].From.Equal(bt.Add(time.Hour)) || !g.Holes[0].To.Equal(to) {
			t.Errorf("statement coverage %+v, want GPU 1 covered [0, 1h) of 2h", g)
		}

		c, err := s.Claim(ctx, "p1", from, to)
		if err != nil {
			t.Fatal(err)
		}
		var gpus []string
		var covered int64
		for _, g := range c.Coverage {
			gpus = append(gpus, g.GPU)
			covered += g.CoveredMillis
		}
		if want := []string{n.gpu(1), n.gpu(2), n.gpu(3), n.gpu(4)}; !reflect.DeepEqual(gpus, want) || covered != 7_200_000 {
			t.Errorf("claim coverage of %v covering %d ms, want %v covering 2 h", gpus, covered, want)
		}
	})
}
