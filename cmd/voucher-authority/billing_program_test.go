package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/billing"
)

const goodProgram = `# a comment
id: p1
issuer: Example Bureau
name: Example voucher
ratio_percent: 50
model_ratios_percent:
  "Ascend 910B": 30.5
cap_per_entity_year_yuan: 10000000
cap_per_entity_lifetime_yuan: 12000000.50
providers: [cloud-a, cloud-b]
valid_from: 2026-01-01
valid_to: 2027-01-01T00:00:00+08:00
rounding: truncate
settlement: after_settlement
`

// mustParseProgram parses src as p.yaml; the test fails if it does not parse.
func mustParseProgram(t *testing.T, src string) (billing.Program, programDoc) {
	t.Helper()
	p, doc, err := parseProgram("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p, doc
}

// programRuleErrors is the rules' refusal of src placed on its lines; the
// test fails if src does not parse or the rules accept it.
func programRuleErrors(t *testing.T, src string) string {
	t.Helper()
	p, doc := mustParseProgram(t, src)
	verr := billing.ValidateProgram(p)
	if verr == nil {
		t.Fatalf("the rules accepted the program:\n%s", src)
	}
	return doc.placeErrors(verr).Error()
}

// wantAll reports each of wants that got lacks.
func wantAll(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

func TestParseProgram(t *testing.T) {
	p, _ := mustParseProgram(t, goodProgram)
	if p.ID != "p1" || p.Ratio != 5000 || p.ModelRatios["Ascend 910B"] != 3050 || p.CapPerYear != 1_000_000_000 ||
		p.CapLifetime != 1_200_000_050 || len(p.Providers) != 2 || p.Rounding != billing.RoundTruncate {
		t.Errorf("program = %+v", p)
	}
	// Dates are midnight China Standard Time.
	if got := p.ValidFrom.UTC().Format("2006-01-02T15:04"); got != "2025-12-31T16:00" || !p.ValidTo.Equal(p.ValidFrom.AddDate(1, 0, 0)) {
		t.Errorf("validity %v to %v", p.ValidFrom, p.ValidTo)
	}
	if err := billing.ValidateProgram(p); err != nil {
		t.Errorf("the good program is invalid: %v", err)
	}
}

func TestParseProgramErrorsNameTheLine(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(goodProgram, old) {
			t.Fatalf("%q not in the program", old)
		}
		return strings.Replace(goodProgram, old, new, 1)
	}
	tests := []struct{ name, yaml, want string }{
		{"unknown key", replace("ratio_percent: 50", "ratio: 50"), "p.yaml:5: ratio: unknown field"},
		{"wrong type", replace("providers: [cloud-a, cloud-b]", "providers: {a: 1}"), "p.yaml:10:"},
		{"three decimals", replace("ratio_percent: 50", "ratio_percent: 50.125"), `p.yaml:5: ratio_percent: "50.125" has more than 2 decimals`},
		{"money with a unit", replace("cap_per_entity_year_yuan: 10000000", "cap_per_entity_year_yuan: 10M"), `p.yaml:8: cap_per_entity_year_yuan: "10M" is not a decimal`},
		{"fen fraction", replace("12000000.50", "12000000.505"), "p.yaml:9: cap_per_entity_lifetime_yuan"},
		{"model ratio", replace("30.5", "thirty"), "p.yaml:7: model_ratios_percent.Ascend 910B"},
		{"bad date", replace("valid_from: 2026-01-01", "valid_from: 2026/01/01"), "p.yaml:11: valid_from"},
		{"missing rounding", replace("rounding: truncate\n", ""), "p.yaml:1: rounding: is required"},
		{"two documents", goodProgram + "---\nid: p2\n", "p.yaml:15: a second YAML document starts here: one document per file"},
		{"not YAML", "id: [\n", "p.yaml:"},
		{"empty", "", "no program"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseProgram("p.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// The rules' refusals (billing.ValidateProgram) land on the file's lines
// under the file's own key names.
func TestProgramRuleErrorsNameTheLine(t *testing.T) {
	src := strings.NewReplacer("ratio_percent: 50", "ratio_percent: 120", "cloud-b]", "cloud-a]",
		"rounding: truncate", "rounding: down").Replace(goodProgram)
	wantAll(t, programRuleErrors(t, src), "p.yaml:5: ratio_percent: 12000 bp", "p.yaml:10: providers.1:", "p.yaml:13: rounding:")
}

// TestShippedPrograms keeps configs/programs/*.yaml loadable and valid.
func TestShippedPrograms(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "configs", "programs", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("example programs: %v %v", files, err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		p, _, err := loadProgram(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if err := billing.ValidateProgram(p); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if seen[p.ID] {
			t.Errorf("%s: id %s is another example's", f, p.ID)
		}
		seen[p.ID] = true
		data, _ := os.ReadFile(f)
		if !strings.Contains(string(data), "EXAMPLE") || !strings.Contains(p.Name, "(example)") {
			t.Errorf("%s does not say it is an example", f)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in     string
		places int
		want   int64
		bad    string
	}{
		{"12", 2, 1200, ""},
		{"12.5", 2, 1250, ""},
		{"0.07", 2, 7, ""},
		{"-3.10", 2, -310, ""},
		{"007", 0, 7, ""},
		{"92233720368547758.07", 2, 9223372036854775807, ""},
		{"92233720368547758.08", 2, 0, "too large"},
		{"99999999999999999999", 0, 0, "too large"},
		{"1.005", 2, 0, "more than 2 decimals"},
		{"1.5", 0, 0, "more than 0 decimals"},
		{"1e3", 2, 0, "not a decimal"},
		{"1,000", 2, 0, "not a decimal"},
		{".5", 2, 0, "not a decimal"},
		{"5.", 2, 0, "not a decimal"},
		{"+5", 2, 0, "not a decimal"},
		{"", 2, 0, "not a decimal"},
		{"-", 2, 0, "not a decimal"},
	}
	for _, tc := range tests {
		got, err := parseDecimal(tc.in, tc.places)
		if tc.bad == "" && (err != nil || got != tc.want) {
			t.Errorf("parseDecimal(%q, %d) = %d, %v; want %d", tc.in, tc.places, got, err, tc.want)
		}
		if tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("parseDecimal(%q, %d) = %d, %v; want an error %q", tc.in, tc.places, got, err, tc.bad)
		}
	}
}

func TestMoneyFlags(t *testing.T) {
	tests := []struct {
		yuan, fen string
		want      billing.Fen
		bad       string
	}{
		{"25.5", "", 2550, ""},
		{"", "2550", 2550, ""},
		{"0", "", 0, ""},
		{"25", "2500", 0, "exclusive"},
		{"", "", 0, "is required"},
		{"-1", "", 0, "--price-yuan-per-hour: -1 is negative"},
		{"", "25.5", 0, "--price-fen-per-hour"},
		{"2.555", "", 0, "more than 2 decimals"},
	}
	for _, tc := range tests {
		got, err := moneyFlags("price-yuan-per-hour", tc.yuan, "price-fen-per-hour", tc.fen)
		if tc.bad == "" && (err != nil || got != tc.want) {
			t.Errorf("%q/%q = %d, %v; want %d", tc.yuan, tc.fen, got, err, tc.want)
		}
		if tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%q/%q = %d, %v; want an error %q", tc.yuan, tc.fen, got, err, tc.bad)
		}
	}
}

func TestFormatPercent(t *testing.T) {
	for bp, want := range map[billing.BasisPoints]string{5000: "50%", 1250: "12.5%", 3050: "30.5%", 1: "0.01%", 10000: "100%", 0: "0%"} {
		if got := formatPercent(bp); got != want {
			t.Errorf("formatPercent(%d) = %q, want %q", bp, got, want)
		}
	}
}
