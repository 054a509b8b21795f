package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

var (
	mar2027 = time.Date(2027, 3, 1, 0, 0, 0, 0, cst).UTC()
	jun2027 = time.Date(2027, 6, 1, 0, 0, 0, 0, cst).UTC()
	jan2027 = time.Date(2027, 1, 5, 0, 0, 0, 0, cst).UTC()
)

// billingRule is one rule of docs/billing.md shown through Ingest: a fresh
// store with billSetup and node n1.
type billingRule struct {
	name string
	run  func(t *testing.T, s *Store, n *billNode)
}

// TestBillingRules: the billing rules of docs/billing.md, case by case, on both stores.
func TestBillingRules(t *testing.T) {
	ctx := context.Background()
	program, voucher := addProgram, issueE1
	ratio := func(bp billing.BasisPoints) func(p *billing.Program) {
		return func(p *billing.Program) { p.Ratio = bp }
	}
	// twoModels prices H20-96GB at 2000 fen/h and ingests an hour on the
	// node's model, then one on H20-96GB: the two records.
	twoModels := func(t *testing.T, s *Store, n *billNode) []protocol.Record {
		t.Helper()
		must(t, s.AddRateCard(ctx, billing.RateCard{ID: "910b", Provider: "p1", Model: "H20-96GB", PricePerHour: 2000, ValidFrom: y2026}))
		h20 := n.hour(2, bt, "acme")
		h20.Model = "H20-96GB"
		return n.ingest(n.hour(1, bt, "acme"), h20).Batch.Records
	}
	rules := []billingRule{
		{"ratio", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 200, "v1:200", billing.NoteSubsidized)
			if b := balance(t, s, "v1"); b != 99_800 {
				t.Errorf("balance %d, want 99800", b)
			}
		}},
		{"voucher balance runs out mid-window", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(5000))
			voucher(t, s, "a", "P1", 300, jun2027)
			voucher(t, s, "b", "P1", 10_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records
			wantLine(t, lineOf(t, s, recs[0]), 1000, 500, "a:300;b:200", billing.NoteSubsidized)
			wantLine(t, lineOf(t, s, recs[1]), 1000, 500, "b:500", billing.NoteSubsidized)
			if a, b := balance(t, s, "a"), balance(t, s, "b"); a != 0 || b != 9_300 {
				t.Errorf("balances a %d b %d, want 0 9300", a, b)
			}
		}},
		{"two vouchers with different expiry: soonest first", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "a-late", "P1", 1000, y2028)
			voucher(t, s, "z-soon", "P1", 1000, mar2027)
			voucher(t, s, "m2", "P1", 1000, jun2027)
			voucher(t, s, "m1", "P1", 1000, jun2027) // same expiry as m2: the id decides
			var recs []protocol.Record
			for i := range 7 {
				recs = append(recs, n.hour(1, bt.Add(time.Duration(i)*time.Hour), "acme"))
			}
			recs = n.ingest(recs...).Batch.Records
			want := []string{"z-soon:200", "z-soon:200", "z-soon:200", "z-soon:200", "z-soon:200", "m1:200", "m1:200"}
			for i, r := range recs {
				if g := grantsString(lineOf(t, s, r).Grants); g != want[i] {
					t.Errorf("record %d paid by %q, want %q", i, g, want[i])
				}
			}
		}},
		{"one program per record", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			program(t, s, "P2", ratio(5000))
			voucher(t, s, "p1v", "P1", 50, mar2027)
			voucher(t, s, "p2v", "P2", 10_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records
			// P1's voucher expires first: P1 pays, and P2 never tops it up.
			l := lineOf(t, s, recs[0])
			wantLine(t, l, 1000, 50, "p1v:50", billing.NotePartial)
			if l.Program != "P1" {
				t.Errorf("program %q, want P1", l.Program)
			}
			l = lineOf(t, s, recs[1])
			wantLine(t, l, 1000, 500, "p2v:500", billing.NoteSubsidized)
			if l.Program != "P2" {
				t.Errorf("program %q, want P2", l.Program)
			}
		}},
		{"yearly cap", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.Ratio, p.CapPerYear = 5000, 700 })
			voucher(t, s, "v1", "P1", 100_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme"), n.hour(1, bt.Add(2*time.Hour), "acme"),
				n.hour(1, jan2027, "acme")).Batch.Records
			wantLine(t, lineOf(t, s, recs[0]), 1000, 500, "v1:500", billing.NoteSubsidized)
			wantLine(t, lineOf(t, s, recs[1]), 1000, 200, "v1:200", billing.NotePartial)
			wantLine(t, lineOf(t, s, recs[2]), 1000, 0, "", billing.NoteNoVoucher)
			wantLine(t, lineOf(t, s, recs[3]), 1000, 500, "v1:500", billing.NoteSubsidized) // a new year
			if b := balance(t, s, "v1"); b != 100_000-1200 {
				t.Errorf("balance %d", b)
			}
		}},
		{"lifetime cap", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.Ratio, p.CapPerYear, p.CapLifetime = 5000, 10_000, 700 })
			voucher(t, s, "v1", "P1", 100_000, y2028)
			recs := n.ingest(n.hour(1, bt, "acme"), n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records
			// The next year in its own batch: the lifetime counter is read back from the store.
			next := n.ingest(n.hour(1, jan2027, "acme")).Batch.Records
			wantLine(t, lineOf(t, s, recs[0]), 1000, 500, "v1:500", billing.NoteSubsidized)
			wantLine(t, lineOf(t, s, recs[1]), 1000, 200, "v1:200", billing.NotePartial)
			wantLine(t, lineOf(t, s, next[0]), 1000, 0, "", billing.NoteNoVoucher)
		}},
		{"expired voucher", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, bt.Add(12*time.Hour))
			recs := n.ingest(n.hour(1, bt.Add(11*time.Hour), "acme"), n.hour(1, bt.Add(12*time.Hour), "acme")).Batch.Records
			wantLine(t, lineOf(t, s, recs[0]), 1000, 200, "v1:200", billing.NoteSubsidized)
			wantLine(t, lineOf(t, s, recs[1]), 1000, 0, "", billing.NoteNoVoucher) // expiry is exclusive
			err := s.IssueVoucherAt(ctx, testVoucher("v2", "P1", "E1", 100, bt.Add(12*time.Hour)), bt.Add(13*time.Hour))
			if !errors.Is(err, ErrInvalidBilling) {
				t.Errorf("issuing an expired voucher: %v", err)
			}
		}},
		{"suspended voucher", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			must(t, s.SetVoucherStatus(ctx, "v1", billing.VoucherSuspended))
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 0, "", billing.NoteNoVoucher)
			must(t, s.SetVoucherStatus(ctx, "v1", billing.VoucherActive))
			r = n.ingest(n.hour(1, bt.Add(time.Hour), "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 200, "v1:200", billing.NoteSubsidized)
		}},
		{"ineligible provider", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.Providers = []string{"p2"} })
			voucher(t, s, "v1", "P1", 100_000, y2028)
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 0, "", billing.NoteNoVoucher)
		}},
		{"ineligible GPU model", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) { p.Models = []string{"H20-96GB"} })
			voucher(t, s, "v1", "P1", 100_000, y2028)
			recs := twoModels(t, s, n)
			wantLine(t, lineOf(t, s, recs[0]), 1000, 0, "", billing.NoteNoVoucher)
			wantLine(t, lineOf(t, s, recs[1]), 2000, 400, "v1:400", billing.NoteSubsidized)
		}},
		{"related party", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			must(t, s.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme", RelatedProviders: []string{"p1"}}))
			r := n.ingest(n.hour(1, bt, "acme")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 0, "", billing.NoteRelatedParty)
			if b := balance(t, s, "v1"); b != 100_000 {
				t.Errorf("balance %d", b)
			}
		}},
		{"model-class ratio override", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", func(p *billing.Program) {
				p.Ratio, p.ModelRatios = 2000, map[string]billing.BasisPoints{"H20-96GB": 3000}
			})
			voucher(t, s, "v1", "P1", 100_000, y2028)
			recs := twoModels(t, s, n)
			wantLine(t, lineOf(t, s, recs[0]), 1000, 200, "v1:200", billing.NoteSubsidized)
			wantLine(t, lineOf(t, s, recs[1]), 2000, 600, "v1:600", billing.NoteSubsidized)
		}},
		{"rounding: half_up and truncate carry the entitlement", func(t *testing.T, s *Store, n *billNode) {
			// 420 fen/h: a minute costs exactly 7 fen; 20% of it is 1.4 fen.
			must(t, s.AddRateCard(ctx, billing.RateCard{ID: "l40", Provider: "p1", Model: "L40S-48GB", PricePerHour: 420, ValidFrom: y2026}))
			must(t, s.PutEntity(ctx, billing.Entity{ID: "E2"}))
			must(t, s.MapTenant(ctx, "p1", "globex", "E2"))
			program(t, s, "PH", func(p *billing.Program) { p.Rounding = billing.RoundHalfUp })
			program(t, s, "PT", func(p *billing.Program) { p.Rounding = billing.RoundTruncate })
			voucher(t, s, "vh", "PH", 100_000, y2028)
			must(t, s.IssueVoucherAt(ctx, testVoucher("vt", "PT", "E2", 100_000, y2028), y2026))
			var recs []protocol.Record
			for i := range 4 {
				for g, tenant := range []string{"acme", "globex"} {
					r := n.use(g+1, bt.Add(time.Duration(i)*time.Minute), time.Minute, tenant, 60_000)
					r.Model = "L40S-48GB"
					recs = append(recs, r)
				}
			}
			recs = n.ingest(recs...).Batch.Records
			// Running 1.4, 2.8, 4.2, 5.6 fen: half up 1, 3, 4, 6; truncated 1, 2, 4, 5.
			wantH, wantT := []billing.Fen{1, 2, 1, 2}, []billing.Fen{1, 1, 2, 1}
			for i := range 4 {
				if h := lineOf(t, s, recs[2*i]); h.Cost != 7 || h.Subsidy != wantH[i] {
					t.Errorf("half_up minute %d: cost %d subsidy %d, want 7 %d", i, h.Cost, h.Subsidy, wantH[i])
				}
				if tr := lineOf(t, s, recs[2*i+1]); tr.Cost != 7 || tr.Subsidy != wantT[i] {
					t.Errorf("truncate minute %d: cost %d subsidy %d, want 7 %d", i, tr.Cost, tr.Subsidy, wantT[i])
				}
			}
			if h, tr := 100_000-balance(t, s, "vh"), 100_000-balance(t, s, "vt"); h != 6 || tr != 5 {
				t.Errorf("paid half_up %d truncate %d, want 6 5", h, tr)
			}
		}},
		{"cost carry: 60 one-minute records at 250 fen/h cost 250", func(t *testing.T, s *Store, n *billNode) {
			must(t, s.AddRateCard(ctx, billing.RateCard{ID: "t4", Provider: "p1", Model: "RTX4090-24GB", PricePerHour: 250, ValidFrom: y2026}))
			// Two batches, to carry the remainder through the store.
			for half := range 2 {
				var recs []protocol.Record
				for i := range 30 {
					r := n.use(1, bt.Add(time.Duration(30*half+i)*time.Minute), time.Minute, "acme", 60_000)
					r.Model = "RTX4090-24GB"
					recs = append(recs, r)
				}
				n.ingest(recs...)
			}
			st, err := s.Statement(ctx, "E1", bt, bt.Add(time.Hour))
			must(t, err)
			if st.Totals.Records != 60 || st.Totals.Cost != 250 {
				t.Fatalf("60 minutes cost %d fen over %d records, want 250", st.Totals.Cost, st.Totals.Records)
			}
			for _, l := range st.Lines {
				if l.Cost != 4 && l.Cost != 5 {
					t.Errorf("a minute cost %d fen, want 4 or 5", l.Cost)
				}
			}
		}},
		{"idle and gap records are never billed", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			use := n.use(1, bt, time.Minute, "acme", 30_000)
			idle := n.use(1, bt, time.Minute, "", 20_000)
			idle.Kind = protocol.KindIdle
			gap := n.use(1, bt, time.Minute, "", 10_000)
			gap.Kind, gap.GapReason = protocol.KindGap, protocol.GapNoSample
			n.ingest(use, idle, gap)
			var charges int
			must(t, s.queryRow(ctx, `SELECT COUNT(*) FROM charges`).Scan(&charges))
			c, err := s.Claim(ctx, "p1", y2026, y2028)
			must(t, err)
			if charges != 1 || len(c.Lines) != 1 || c.Lines[0].GPUMillis != 30_000 {
				t.Errorf("%d charges, claim lines %+v; want the usage record only", charges, c.Lines)
			}
		}},
		{"a rate card change inside a month", func(t *testing.T, s *Store, n *billNode) {
			change := bt.Add(10 * 24 * time.Hour)
			must(t, s.EndRateCard(ctx, "h100", change))
			must(t, s.AddRateCard(ctx, billing.RateCard{ID: "h100-b", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 2000, ValidFrom: change}))
			recs := n.ingest(n.hour(1, change.Add(-time.Hour), "acme"), n.hour(1, change, "acme"),
				n.hour(1, change.Add(2*time.Hour), "acme")).Batch.Records
			a, b := lineOf(t, s, recs[0]), lineOf(t, s, recs[1])
			if a.RateCard != "h100" || a.Cost != 1000 || b.RateCard != "h100-b" || b.Cost != 2000 || b.PricePerHour != 2000 {
				t.Errorf("before the change: %s %d; after: %s %d", a.RateCard, a.Cost, b.RateCard, b.Cost)
			}
			// Billing is final: the new card cannot end before what it priced.
			if err := s.EndRateCard(ctx, "h100-b", change.Add(time.Hour)); !errors.Is(err, ErrBillingConflict) {
				t.Errorf("ending a card before a record it priced: %v", err)
			}
		}},
		{"MIG: a profile card, and the whole-GPU card scaled by the slice", func(t *testing.T, s *Store, n *billNode) {
			must(t, s.AddRateCard(ctx, billing.RateCard{ID: "h100-1g", Provider: "p1", Model: "H100-SXM5-80GB", MIGProfile: "1g.10gb", PricePerHour: 150, ValidFrom: y2026}))
			mig := func(unit, profile string, num int, start time.Time) protocol.Record {
				r := n.hour(1, start, "acme")
				r.GPUUUID, r.MIGProfile, r.SliceNum, r.SliceDen = unit, profile, num, 7
				return r
			}
			recs := n.ingest(mig("MIG-00000000-0000-4000-9000-00000000000a", "1g.10gb", 1, bt), mig("MIG-00000000-0000-4000-9000-00000000000b", "3g.40gb", 3, bt), mig("MIG-00000000-0000-4000-9000-00000000000b", "3g.40gb", 3, bt.Add(time.Hour))).Batch.Records
			a := lineOf(t, s, recs[0])
			if a.RateCard != "h100-1g" || a.Cost != 150 {
				t.Errorf("1g record: card %q cost %d, want h100-1g 150", a.RateCard, a.Cost)
			}
			// 3/7 of 1000 fen is 428.57 fen an hour: 429, then 428 (857 for both).
			b1, b2 := lineOf(t, s, recs[1]), lineOf(t, s, recs[2])
			if b1.RateCard != "h100" || b1.Cost != 429 || b2.Cost != 428 {
				t.Errorf("3g records: card %q costs %d %d, want h100 429 428", b1.RateCard, b1.Cost, b2.Cost)
			}
		}},
		{"unpriced usage", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			r := n.hour(1, bt, "acme")
			r.Model = "A100-SXM4-80GB"
			r = n.ingest(r).Batch.Records[0]
			l := lineOf(t, s, r)
			wantLine(t, l, 0, 0, "", billing.NoteUnpriced)
			st, err := s.Statement(ctx, "E1", y2026, y2028)
			must(t, err)
			if l.RateCard != "" || st.Totals.Unpriced != 1 || st.Totals.GPUMillis != 3_600_000 {
				t.Errorf("card %q, statement totals %+v", l.RateCard, st.Totals)
			}
		}},
		{"tenant mapped to no entity", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			r := n.ingest(n.hour(1, bt, "stranger")).Batch.Records[0]
			wantLine(t, lineOf(t, s, r), 1000, 0, "", billing.NoteNoEntity)
			st, err := s.Statement(ctx, "E1", y2026, y2028)
			must(t, err)
			if len(st.Lines) != 0 {
				t.Errorf("E1's statement has another tenant's usage: %+v", st.Lines)
			}
		}},
		{"re-ingesting a batch never subsidizes twice", func(t *testing.T, s *Store, n *billNode) {
			program(t, s, "P1", ratio(2000))
			voucher(t, s, "v1", "P1", 100_000, y2028)
			sub := n.ingest(n.hour(1, bt, "acme"), n.hour(2, bt, "acme"))
			for range 3 {
				res, err := s.Ingest(ctx, sub)
				if err != nil || !res.Duplicate {
					t.Fatalf("resend: %+v, %v; want a duplicate", res, err)
				}
			}
			var charges, grants int
			must(t, s.queryRow(ctx, `SELECT (SELECT COUNT(*) FROM charges), (SELECT COUNT(*) FROM grants)`).Scan(&charges, &grants))
			if b := balance(t, s, "v1"); b != 100_000-400 || charges != 2 || grants != 2 {
				t.Errorf("after resends: balance %d, %d charges, %d grants; want 99600, 2, 2", b, charges, grants)
			}
		}},
	}
	runRules(t, rules)
}

// runRules runs each rule on a fresh store of each driver, with billSetup
// and node n1.
func runRules(t *testing.T, rules []billingRule) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		for _, r := range rules {
			t.Run(r.name, func(t *testing.T) {
				s := open(t)
				billSetup(t, s)
				r.run(t, s, newBillNode(t, s, "n1"))
			})
		}
	})
}

// addProgram adds testProgram(id, change).
func addProgram(t *testing.T, s *Store, id string, change func(p *billing.Program)) {
	t.Helper()
	must(t, s.AddProgram(context.Background(), testProgram(id, change)))
}

// issueE1 issues a voucher of prog to E1 on 2026-01-01.
func issueE1(t *testing.T, s *Store, id, prog string, face billing.Fen, expires time.Time) {
	t.Helper()
	must(t, s.IssueVoucherAt(context.Background(), testVoucher(id, prog, "E1", face, expires), y2026))
}
