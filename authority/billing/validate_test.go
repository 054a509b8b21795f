package billing

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	jan1     = time.Date(2026, 1, 1, 0, 0, 0, 0, cst)
	nextJan1 = time.Date(2027, 1, 1, 0, 0, 0, 0, cst)
)

func goodProgram() Program {
	return Program{ID: "hz-2026", Issuer: "Hangzhou", Name: "compute vouchers", Ratio: 2000,
		ModelRatios: map[string]BasisPoints{"Ascend 910B": 3000}, CapPerYear: 200_000_000,
		Providers: []string{"p1"}, ValidFrom: jan1, ValidTo: nextJan1, Rounding: RoundHalfUp, Settlement: SettleAfter}
}

func goodVoucher() Voucher {
	return Voucher{ID: "v1", Program: "hz-2026", Holder: "E1", Face: 100_000, Balance: 100_000,
		Issued: jan1, Expires: jan1.AddDate(0, 6, 0), Status: VoucherActive}
}

func goodCard() RateCard {
	return RateCard{ID: "c1", Provider: "p1", Model: "NVIDIA H100 80GB HBM3", PricePerHour: 250, ValidFrom: jan1}
}

// wantFields checks that err is invalid input naming exactly the fields.
func wantFields(t *testing.T, err error, fields ...string) {
	t.Helper()
	if len(fields) == 0 {
		if err != nil {
			t.Fatalf("err = %v, want none", err)
		}
		return
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		got = append(got, fe.Field)
	}
	if strings.Join(got, ",") != strings.Join(fields, ",") {
		t.Fatalf("fields %v, want %v (err: %v)", got, fields, err)
	}
}

// changeCase is a row of a Validate test: what it changes in a good
// value, and the fields the problems must name (none: still valid).
type changeCase[T any] struct {
	name   string
	change func(*T)
	fields []string
}

// runChanges checks each row on a fresh good value with validate.
func runChanges[T any](t *testing.T, good func() T, validate func(T) error, tests []changeCase[T]) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := good()
			tc.change(&v)
			wantFields(t, validate(v), tc.fields...)
		})
	}
}

func TestValidateProgram(t *testing.T) {
	runChanges(t, goodProgram, ValidateProgram, []changeCase[Program]{
		{"good", func(p *Program) {}, nil},
		{"ratio above 100%", func(p *Program) { p.Ratio = 10001 }, []string{"ratio_bp"}},
		{"negative ratio", func(p *Program) { p.Ratio = -1 }, []string{"ratio_bp"}},
		{"model ratio above 100%", func(p *Program) { p.ModelRatios["Ascend 910B"] = 12000 }, []string{"model_ratios_bp[Ascend 910B]"}},
		{"model ratio for a model not listed", func(p *Program) { p.Models = []string{"H100-SXM5-80GB"} }, []string{"model_ratios_bp[Ascend 910B]"}},
		{"no yearly cap", func(p *Program) { p.CapPerYear = 0 }, []string{"cap_per_entity_year_fen"}},
		{"negative lifetime cap", func(p *Program) { p.CapLifetime = -5 }, []string{"cap_per_entity_lifetime_fen"}},
		{"cap beyond bounds", func(p *Program) { p.CapPerYear = MaxFen + 1 }, []string{"cap_per_entity_year_fen"}},
		{"no providers", func(p *Program) { p.Providers = nil }, []string{"providers"}},
		{"empty provider", func(p *Program) { p.Providers = []string{""} }, []string{"providers[0]"}},
		{"provider twice", func(p *Program) { p.Providers = []string{"p1", "p1"} }, []string{"providers[1]"}},
		{"valid_to before valid_from", func(p *Program) { p.ValidTo = p.ValidFrom }, []string{"valid_to"}},
		{"no valid_from", func(p *Program) { p.ValidFrom = time.Time{} }, []string{"valid_from"}},
		{"unknown rounding", func(p *Program) { p.Rounding = "bankers" }, []string{"rounding"}},
		{"no settlement", func(p *Program) { p.Settlement = "" }, []string{"settlement"}},
		{"bad id and issuer", func(p *Program) { p.ID, p.Issuer = "a b", "" }, []string{"id", "issuer"}},
	})
}

func TestValidateVoucherAndIssue(t *testing.T) {
	now := jan1.Add(24 * time.Hour)
	tests := []struct {
		name   string
		change func(v *Voucher, p *Program)
		fields []string
	}{
		{"good", func(v *Voucher, p *Program) {}, nil},
		{"zero face", func(v *Voucher, p *Program) { v.Face, v.Balance = 0, 0 }, []string{"face_fen"}},
		{"balance above face", func(v *Voucher, p *Program) { v.Balance = v.Face + 1 }, []string{"balance_fen"}},
		{"expires before issued", func(v *Voucher, p *Program) { v.Expires = v.Issued.Add(-time.Hour) }, []string{"expires"}},
		{"unknown status", func(v *Voucher, p *Program) { v.Status = "spent" }, []string{"status"}},
		{"holder id with a colon", func(v *Voucher, p *Program) { v.Holder = "E:1" }, []string{"holder"}},
		{"already expired", func(v *Voucher, p *Program) { v.Expires = now }, []string{"expires"}},
		{"after the program ends", func(v *Voucher, p *Program) { v.Expires = nextJan1.Add(time.Hour) }, []string{"expires"}},
		{"before the program starts", func(v *Voucher, p *Program) { v.Issued = jan1.Add(-time.Hour) }, []string{"issued"}},
		{"program ended", func(v *Voucher, p *Program) { p.ValidTo = now; v.Expires = now.Add(-time.Minute) },
			[]string{"expires", "program"}},
		{"another program", func(v *Voucher, p *Program) { v.Program = "sz-2026" }, []string{"program"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, p := goodVoucher(), goodProgram()
			tc.change(&v, &p)
			wantFields(t, CheckIssue(v, p, now), tc.fields...)
		})
	}
}

func TestValidateRateCard(t *testing.T) {
	runChanges(t, goodCard, ValidateRateCard, []changeCase[RateCard]{
		{"good", func(c *RateCard) {}, nil},
		{"good with an end and a profile", func(c *RateCard) { c.ValidTo, c.MIGProfile = nextJan1, "1g.10gb" }, nil},
		{"negative price", func(c *RateCard) { c.PricePerHour = -1 }, []string{"price_fen_per_hour"}},
		{"absurd price", func(c *RateCard) { c.PricePerHour = MaxPricePerHour + 1 }, []string{"price_fen_per_hour"}},
		{"ends before it starts", func(c *RateCard) { c.ValidTo = c.ValidFrom.Add(-time.Second) }, []string{"valid_to"}},
		{"no model", func(c *RateCard) { c.Model = "" }, []string{"model"}},
		{"provider with a newline", func(c *RateCard) { c.Provider = "p\n1" }, []string{"provider"}},
		{"profile with spaces around", func(c *RateCard) { c.MIGProfile = " 1g " }, []string{"mig_profile"}},
	})
}

func TestValidateEntityAndMapping(t *testing.T) {
	wantFields(t, ValidateEntity(Entity{ID: "91330100MA27XXXX1X", Name: "Acme", RelatedProviders: []string{"p1"}}))
	wantFields(t, ValidateEntity(Entity{ID: "", RelatedProviders: []string{"p1", "p1"}}), "id", "related_providers[1]")
	wantFields(t, ValidateMapping("p1", "acme", "E1"))
	wantFields(t, ValidateMapping("", "acme", "E;1"), "provider", "entity")
}

func TestFieldErrorNamesObjectAndField(t *testing.T) {
	p := goodProgram()
	p.Ratio = 15000
	err := ValidateProgram(p)
	if msg := err.Error(); !strings.Contains(msg, `program "hz-2026": ratio_bp: 15000 bp`) {
		t.Errorf("message %q does not name the program, field and value", msg)
	}
}
