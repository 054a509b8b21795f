package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// cst is the programs' calendar (docs/billing.md).
var cst = time.FixedZone("CST", 8*3600)

var (
	y2026 = time.Date(2026, 1, 1, 0, 0, 0, 0, cst).UTC()
	y2028 = time.Date(2028, 1, 1, 0, 0, 0, 0, cst).UTC()
)

// testProgram is a valid program on provider p1 over 2026-2027; change
// adjusts it.
func testProgram(id string, change func(p *billing.Program)) billing.Program {
	p := billing.Program{ID: id, Issuer: "city", Name: id, Ratio: 2000, CapPerYear: 1_000_000,
		Providers: []string{"p1"}, ValidFrom: y2026, ValidTo: y2028, Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}
	if change != nil {
		change(&p)
	}
	return p
}

func testVoucher(id, program, holder string, face billing.Fen, expires time.Time) billing.Voucher {
	return billing.Voucher{ID: id, Program: program, Holder: holder, Face: face, Issued: y2026, Expires: expires}
}

func TestBillingOperations(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		must(t, s.PutEntity(ctx, billing.Entity{ID: "E2", Name: "Beta", RelatedProviders: []string{"p2", "p1"}}))
		must(t, s.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme"}))
		// Put again: the name and related providers are replaced.
		must(t, s.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme Ltd", RelatedProviders: []string{"p3"}}))
		es, err := s.Entities(ctx)
		want := []billing.Entity{{ID: "E1", Name: "Acme Ltd", RelatedProviders: []string{"p3"}}, {ID: "E2", Name: "Beta", RelatedProviders: []string{"p1", "p2"}}}
		if err != nil || !reflect.DeepEqual(es, want) {
			t.Fatalf("Entities = %+v, %v; want %+v", es, err, want)
		}

		p := testProgram("hz", func(p *billing.Program) {
			p.ModelRatios = map[string]billing.BasisPoints{"H20-96GB": 3000}
			p.Models = []string{"H100-SXM5-80GB", "H20-96GB"}
			p.CapLifetime = 5_000_000
			p.Providers = []string{"p2", "p1"}
		})
		must(t, s.AddProgram(ctx, p))
		ps, err := s.Programs(ctx)
		p.Providers, p.Models = []string{"p1", "p2"}, []string{"H100-SXM5-80GB", "H20-96GB"} // listed sorted
		if err != nil || len(ps) != 1 || !reflect.DeepEqual(ps[0], p) {
			t.Fatalf("Programs = %+v, %v; want %+v", ps, err, p)
		}

		v := testVoucher("v1", "hz", "E1", 10_000, y2028)
		must(t, s.IssueVoucherAt(ctx, v, y2026))
		must(t, s.IssueVoucherAt(ctx, testVoucher("v2", "hz", "E2", 500, y2028), y2026))
		vs, err := s.Vouchers(ctx, "E1")
		v.Balance, v.Status = v.Face, billing.VoucherActive
		if err != nil || !reflect.DeepEqual(vs, []billing.Voucher{v}) {
			t.Fatalf("Vouchers(E1) = %+v, %v; want %+v", vs, err, v)
		}
		if all, err := s.Vouchers(ctx, ""); err != nil || len(all) != 2 || all[0].ID != "v1" || all[1].ID != "v2" {
			t.Fatalf("Vouchers() = %+v, %v", all, err)
		}
		must(t, s.SetVoucherStatus(ctx, "v1", billing.VoucherSuspended))
		must(t, s.SetVoucherStatus(ctx, "v1", billing.VoucherActive))
		must(t, s.SetVoucherStatus(ctx, "v2", billing.VoucherRevoked))
		if vs, _ := s.Vouchers(ctx, "E2"); len(vs) != 1 || vs[0].Status != billing.VoucherRevoked {
			t.Fatalf("v2 after revoke: %+v", vs)
		}

		must(t, s.MapTenant(ctx, "p1", "acme", "E1"))
		must(t, s.MapTenant(ctx, "p1", "acme", "E2")) // remapped

		c1 := billing.RateCard{ID: "c1", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 250, ValidFrom: y2026}
		must(t, s.AddRateCard(ctx, c1))
		at := y2026.AddDate(0, 6, 0)
		must(t, s.EndRateCard(ctx, "c1", at))
		c2 := billing.RateCard{ID: "c2", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 300, ValidFrom: at}
		must(t, s.AddRateCard(ctx, c2))
		mig := billing.RateCard{ID: "c3", Provider: "p1", Model: "H100-SXM5-80GB", MIGProfile: "1g.10gb", PricePerHour: 40, ValidFrom: y2026, ValidTo: y2028}
		must(t, s.AddRateCard(ctx, mig))
		cs, err := s.RateCards(ctx, "p1")
		c1.ValidTo = at
		if err != nil || !reflect.DeepEqual(cs, []billing.RateCard{c1, c2, mig}) {
			t.Fatalf("RateCards = %+v, %v", cs, err)
		}
		if cs, err := s.RateCards(ctx, "p9"); err != nil || len(cs) != 0 {
			t.Fatalf("RateCards(p9) = %+v, %v", cs, err)
		}
	})
}

// TestBillingOperationErrors: every refusal is the documented class, names
// what is wrong, and writes nothing.
func TestBillingOperationErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		must(t, s.PutEntity(ctx, billing.Entity{ID: "E1"}))
		must(t, s.AddProgram(ctx, testProgram("P1", nil)))
		must(t, s.IssueVoucherAt(ctx, testVoucher("v1", "P1", "E1", 100, y2028), y2026))
		must(t, s.AddRateCard(ctx, billing.RateCard{ID: "c1", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 250,
			ValidFrom: y2026, ValidTo: y2026.AddDate(0, 6, 0)}))
		must(t, s.AddRateCard(ctx, billing.RateCard{ID: "c2", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 250,
			ValidFrom: y2026.AddDate(0, 9, 0)}))
		later := y2026.AddDate(0, 1, 0)
		tests := []struct {
			name string
			do   func() error
			want error
			says string
		}{
			{"negative price", func() error {
				return s.AddRateCard(ctx, billing.RateCard{ID: "c9", Provider: "p1", Model: "A100-SXM4-80GB", PricePerHour: -1, ValidFrom: y2026})
			}, ErrInvalidBilling, "price_fen_per_hour"},
			{"ratio above 1", func() error {
				return s.AddProgram(ctx, testProgram("P9", func(p *billing.Program) { p.Ratio = 10001 }))
			}, ErrInvalidBilling, "ratio_bp"},
			{"overlapping rate card", func() error {
				return s.AddRateCard(ctx, billing.RateCard{ID: "c9", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 1,
					ValidFrom: y2026.AddDate(0, 5, 0), ValidTo: y2026.AddDate(0, 7, 0)})
			}, ErrBillingConflict, `rate card "c1"`},
			{"open card over a later one", func() error {
				return s.AddRateCard(ctx, billing.RateCard{ID: "c9", Provider: "p1", Model: "H100-SXM5-80GB", PricePerHour: 1, ValidFrom: y2026.AddDate(0, 7, 0)})
			}, ErrBillingConflict, `rate card "c2"`},
			{"rate card id exists", func() error {
				return s.AddRateCard(ctx, billing.RateCard{ID: "c1", Provider: "p1", Model: "A100-SXM4-80GB", PricePerHour: 1, ValidFrom: y2026})
			}, ErrBillingConflict, "id exists"},
			{"expired voucher", func() error {
				return s.IssueVoucherAt(ctx, testVoucher("v9", "P1", "E1", 100, later), later)
			}, ErrInvalidBilling, "already expired"},
			{"voucher of a missing program", func() error {
				return s.IssueVoucherAt(ctx, testVoucher("v9", "P9", "E1", 100, y2028), y2026)
			}, ErrBillingConflict, `program "P9" does not exist`},
			{"voucher of a missing holder", func() error {
				return s.IssueVoucherAt(ctx, testVoucher("v9", "P1", "E9", 100, y2028), y2026)
			}, ErrBillingConflict, `holder "E9" does not exist`},
			{"voucher id exists", func() error {
				return s.IssueVoucherAt(ctx, testVoucher("v1", "P1", "E1", 100, y2028), y2026)
			}, ErrBillingConflict, "id exists"},
			{"program id exists", func() error { return s.AddProgram(ctx, testProgram("P1", nil)) }, ErrBillingConflict, "id exists"},
			{"map to a missing entity", func() error { return s.MapTenant(ctx, "p1", "acme", "E9") }, ErrBillingConflict, `entity "E9"`},
			{"map an empty tenant", func() error { return s.MapTenant(ctx, "p1", "", "E1") }, ErrInvalidBilling, "tenant"},
			{"unknown status", func() error { return s.SetVoucherStatus(ctx, "v1", "spent") }, ErrInvalidBilling, "status"},
			{"status of a missing voucher", func() error { return s.SetVoucherStatus(ctx, "v9", billing.VoucherSuspended) }, ErrBillingNotFound, "v9"},
			{"end a missing card", func() error { return s.EndRateCard(ctx, "c9", later) }, ErrBillingNotFound, "c9"},
			{"end a card already ended", func() error { return s.EndRateCard(ctx, "c1", later) }, ErrBillingConflict, "already ends"},
			{"end a card before it starts", func() error { return s.EndRateCard(ctx, "c2", y2026) }, ErrInvalidBilling, "valid_to"},
			{"statement of a missing entity", func() error { _, err := s.Statement(ctx, "E9", y2026, y2028); return err }, ErrBillingNotFound, "E9"},
			{"statement of an empty period", func() error { _, err := s.Statement(ctx, "E1", y2028, y2026); return err }, ErrInvalidBilling, "period"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := billingRows(t, s)
				err := tc.do()
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("err = %v; want %v saying %q", err, tc.want, tc.says)
				}
				if after := billingRows(t, s); after != before {
					t.Errorf("refused, but rows changed: %s -> %s", before, after)
				}
			})
		}
		// Revoking is final.
		must(t, s.SetVoucherStatus(ctx, "v1", billing.VoucherRevoked))
		if err := s.SetVoucherStatus(ctx, "v1", billing.VoucherActive); !errors.Is(err, ErrBillingConflict) {
			t.Errorf("reactivating a revoked voucher: %v", err)
		}
	})
}

// billingRows summarizes the billing tables, to see that a refusal wrote
// nothing.
func billingRows(t *testing.T, s *Store) string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT COUNT(*) FROM entities`, `SELECT COUNT(*) FROM tenant_entities`, `SELECT COUNT(*) FROM programs`,
		`SELECT COUNT(*) FROM program_providers`, `SELECT COUNT(*) FROM vouchers`, `SELECT COUNT(*) FROM rate_cards`,
		`SELECT COUNT(*) FROM rate_cards WHERE valid_to_ms < 9223372036854775807`, `SELECT COUNT(*) FROM vouchers WHERE status = 'active'`,
	} {
		var n int64
		if err := s.queryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, " ")
}
