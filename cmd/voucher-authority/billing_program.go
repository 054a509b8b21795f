package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/yamlerr"
)

// programFile is a program definition (configs/programs/*.yaml). Money is
// yuan and ratios are percent, both decimal strings with at most 2
// decimals (exact in fen and basis points); dates are TIME as on the
// command line. Decoded strictly: an unknown key is an error.
type programFile struct {
	ID          string            `yaml:"id"`
	Issuer      string            `yaml:"issuer"`
	Name        string            `yaml:"name"`
	Ratio       string            `yaml:"ratio_percent"`
	ModelRatios map[string]string `yaml:"model_ratios_percent"`
	CapPerYear  string            `yaml:"cap_per_entity_year_yuan"`
	CapLifetime string            `yaml:"cap_per_entity_lifetime_yuan"`
	Providers   []string          `yaml:"providers"`
	Models      []string          `yaml:"models"`
	ValidFrom   string            `yaml:"valid_from"`
	ValidTo     string            `yaml:"valid_to"`
	Rounding    string            `yaml:"rounding"`
	Settlement  string            `yaml:"settlement"`
	// The terms a scheme states beyond ratio and caps (docs/billing.md,
	// "What a program states"); all optional.
	ProviderApprovals map[string]approvalFile `yaml:"provider_approvals"`
	CategoryTerms     map[string]categoryFile `yaml:"category_terms"`
	VoucherTermMonths int                     `yaml:"voucher_term_months"`
	VoucherTermFrom   string                  `yaml:"voucher_term_from"`
	VoucherMin        string                  `yaml:"voucher_min_yuan"`
	VoucherMax        string                  `yaml:"voucher_max_yuan"`
	BudgetPerYear     string                  `yaml:"budget_per_year_yuan"`
}

// approvalFile is a provider's approval period: TIMEs, either optional.
type approvalFile struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// categoryFile is a category's terms: a ratio, and optionally a yearly cap.
type categoryFile struct {
	Ratio      string `yaml:"ratio_percent"`
	CapPerYear string `yaml:"cap_per_entity_year_yuan"`
}

// programDoc is a decoded program file, kept to name lines in errors.
type programDoc struct {
	name string
	root *yaml.Node // the top-level mapping
}

// errorf is "file:line: path: msg", the line that of the deepest key of
// path in the file (1 when the key is absent).
func (d programDoc) errorf(path []string, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: %s", d.name, d.line(path), strings.Join(path, "."), fmt.Sprintf(format, args...))
}

func (d programDoc) line(path []string) int {
	n, at := d.root, 1
	for _, key := range path {
		if n != nil && n.Kind == yaml.SequenceNode {
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(n.Content) {
				return at
			}
			n = n.Content[i]
			at = n.Line
			continue
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return at
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				at, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		n = next
	}
	return at
}

// loadProgram reads and decodes a program file.
func loadProgram(path string) (billing.Program, programDoc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return billing.Program{}, programDoc{}, fmt.Errorf("read program file: %w", err)
	}
	return parseProgram(path, data)
}

// parseProgram decodes data (named name in errors) strictly and converts
// its decimals and dates; the values' rules are the store's to check.
func parseProgram(name string, data []byte) (billing.Program, programDoc, error) {
	doc := programDoc{name: name}
	var f programFile
	if err := yamlerr.Decode(name, data, &f); err != nil {
		if errors.Is(err, io.EOF) {
			return billing.Program{}, doc, fmt.Errorf("%s: no program in the file", name)
		}
		return billing.Program{}, doc, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return billing.Program{}, doc, yamlerr.Rewrite(name, err)
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		doc.root = root.Content[0]
	}
	p := billing.Program{ID: f.ID, Issuer: f.Issuer, Name: f.Name, Providers: f.Providers, Models: f.Models,
		Rounding: f.Rounding, Settlement: f.Settlement}
	for _, req := range [][2]string{{"id", f.ID}, {"issuer", f.Issuer}, {"name", f.Name}, {"ratio_percent", f.Ratio},
		{"cap_per_entity_year_yuan", f.CapPerYear}, {"valid_from", f.ValidFrom}, {"valid_to", f.ValidTo},
		{"rounding", f.Rounding}, {"settlement", f.Settlement}} {
		if req[1] == "" {
			return p, doc, doc.errorf([]string{req[0]}, "is required")
		}
	}
	var err error
	if p.Ratio, err = parsePercent(f.Ratio); err != nil {
		return p, doc, doc.errorf([]string{"ratio_percent"}, "%v", err)
	}
	if len(f.ModelRatios) > 0 {
		p.ModelRatios = make(map[string]billing.BasisPoints, len(f.ModelRatios))
		for model, v := range f.ModelRatios {
			if p.ModelRatios[model], err = parsePercent(v); err != nil {
				return p, doc, doc.errorf([]string{"model_ratios_percent", model}, "%v", err)
			}
		}
	}
	if p.CapPerYear, err = parseYuan(f.CapPerYear); err != nil {
		return p, doc, doc.errorf([]string{"cap_per_entity_year_yuan"}, "%v", err)
	}
	if f.CapLifetime != "" {
		if p.CapLifetime, err = parseYuan(f.CapLifetime); err != nil {
			return p, doc, doc.errorf([]string{"cap_per_entity_lifetime_yuan"}, "%v", err)
		}
	}
	if p.ValidFrom, err = server.ParseBillingTime(f.ValidFrom); err != nil {
		return p, doc, doc.errorf([]string{"valid_from"}, "%v", err)
	}
	if p.ValidTo, err = server.ParseBillingTime(f.ValidTo); err != nil {
		return p, doc, doc.errorf([]string{"valid_to"}, "%v", err)
	}
	return p, doc, parseTerms(&p, f, doc)
}

// parseTerms converts the optional terms of a program file.
func parseTerms(p *billing.Program, f programFile, doc programDoc) error {
	p.VoucherTermMonths, p.TermFrom = f.VoucherTermMonths, f.VoucherTermFrom
	for _, m := range []struct {
		key string
		val string
		to  *billing.Fen
	}{{"voucher_min_yuan", f.VoucherMin, &p.VoucherMin}, {"voucher_max_yuan", f.VoucherMax, &p.VoucherMax},
		{"budget_per_year_yuan", f.BudgetPerYear, &p.BudgetPerYear}} {
		if m.val == "" {
			continue
		}
		v, err := parseYuan(m.val)
		if err != nil {
			return doc.errorf([]string{m.key}, "%v", err)
		}
		*m.to = v
	}
	for prov, a := range f.ProviderApprovals {
		if p.Approvals == nil {
			p.Approvals = map[string]billing.Approval{}
		}
		var ap billing.Approval
		for _, t := range []struct {
			key, val string
			to       *time.Time
		}{{"from", a.From, &ap.From}, {"to", a.To, &ap.To}} {
			if t.val == "" {
				continue
			}
			v, err := server.ParseBillingTime(t.val)
			if err != nil {
				return doc.errorf([]string{"provider_approvals", prov, t.key}, "%v", err)
			}
			*t.to = v
		}
		p.Approvals[prov] = ap
	}
	for name, c := range f.CategoryTerms {
		if p.CategoryTerms == nil {
			p.CategoryTerms = map[string]billing.CategoryTerm{}
		}
		var (
			t   billing.CategoryTerm
			err error
		)
		if t.Ratio, err = parsePercent(c.Ratio); err != nil {
			return doc.errorf([]string{"category_terms", name, "ratio_percent"}, "%v", err)
		}
		if c.CapPerYear != "" {
			if t.CapPerYear, err = parseYuan(c.CapPerYear); err != nil {
				return doc.errorf([]string{"category_terms", name, "cap_per_entity_year_yuan"}, "%v", err)
			}
		}
		p.CategoryTerms[name] = t
	}
	return nil
}

// placeErrors puts the rules' refusal of the program (one
// *billing.FieldError per bad value, named as the JSON names them) at the
// file's lines: "file:line: field: problem", one a line. The file states
// money in yuan and ratios in percent, so ratio_bp is ratio_percent there,
// cap_per_entity_year_fen is cap_per_entity_year_yuan. An error that names
// no field (a program id that exists) is put at the id.
func (d programDoc) placeErrors(err error) error {
	var fes []*billing.FieldError
	walkErrors(err, func(e error) {
		if fe, ok := e.(*billing.FieldError); ok { //nolint:errorlint // walkErrors visits every wrapped error itself
			fes = append(fes, fe)
		}
	})
	if len(fes) == 0 {
		return fmt.Errorf("%s:%d: %w", d.name, d.line([]string{"id"}), err)
	}
	msgs := make([]string, len(fes))
	for i, fe := range fes {
		path := fileField(fe.Field)
		msgs[i] = fmt.Sprintf("%s:%d: %s: %s", d.name, d.line(path), strings.Join(path, "."), fe.Msg)
	}
	// Keep the sentinel for the exit code.
	return fmt.Errorf("%s%w", strings.Join(msgs, "\n"), quiet{err})
}

// quiet wraps an error without adding to the message.
type quiet struct{ error }

func (quiet) Error() string   { return "" }
func (q quiet) Unwrap() error { return q.error }

// walkErrors calls fn on err and every error it wraps.
func walkErrors(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch u := err.(type) { //nolint:errorlint // this is the walk that unwraps
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, fn)
		}
	case interface{ Unwrap() error }:
		walkErrors(u.Unwrap(), fn)
	}
}

// fileField maps a program field as the JSON names it ("ratio_bp",
// "model_ratios_bp[H100]", "providers[2]", "category_terms[small].ratio_bp")
// to its path in the file (["ratio_percent"], ["model_ratios_percent",
// "H100"], ["providers", "2"], ["category_terms", "small", "ratio_percent"]).
func fileField(field string) []string {
	name, rest, _ := strings.Cut(field, "[")
	sub, tail, _ := strings.Cut(rest, "]")
	path := []string{fileKey(name)}
	if sub != "" {
		path = append(path, sub)
	}
	if tail = strings.TrimPrefix(tail, "."); tail != "" {
		path = append(path, fileKey(tail))
	}
	return path
}

// fileKey is the program file's key of a JSON field: money in yuan,
// ratios in percent.
func fileKey(name string) string {
	switch name {
	case "ratio_bp":
		return "ratio_percent"
	case "model_ratios_bp":
		return "model_ratios_percent"
	case "voucher_min_fen", "voucher_max_fen", "cap_per_entity_year_fen", "cap_per_entity_lifetime_fen":
		return strings.TrimSuffix(name, "_fen") + "_yuan"
	case "budget_per_year_fen":
		return "budget_per_year_yuan"
	}
	return name
}

func programAddCmd() *cobra.Command {
	c := leaf("add", "add a program from its definition file")
	db := dbFlag(c)
	file := c.Flags().String("file", "", "program definition (YAML; examples in configs/programs/, installed in /usr/share/doc/voucher-authority/examples/programs/)")
	required(c, "file")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		p, doc, err := loadProgram(*file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		// The rules checked here first, to name the file's lines; the store
		// checks them again.
		if err := billing.ValidateProgram(p); err != nil {
			fmt.Fprintln(stderr, doc.placeErrors(err))
			return exitUsage
		}
		return withBilling(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.AddProgram(ctx, p); err != nil {
				if errors.Is(err, store.ErrInvalidBilling) || errors.Is(err, store.ErrBillingConflict) {
					return doc.placeErrors(err)
				}
				return err
			}
			fmt.Fprintf(stdout, "added program %s (%s, %s): %s of cost, at most %s CNY per entity a year\n",
				p.ID, p.Name, p.Issuer, formatPercent(p.Ratio), billing.FormatYuan(p.CapPerYear))
			return nil
		})
	})
}

func programListCmd() *cobra.Command {
	return listCommand[billing.Program]{
		use: "list", short: "list the programs",
		load: unfiltered((*store.Store).Programs),
		header: []string{"id", "issuer", "ratio", "by model", "cap/entity/year CNY", "lifetime cap CNY",
			"providers", "models", "valid from (UTC+8)", "valid to", "rounding", "settlement"},
		row: func(p billing.Program) []string {
			lifetime := "none"
			if p.CapLifetime > 0 {
				lifetime = billing.FormatYuan(p.CapLifetime)
			}
			models := strings.Join(p.Models, ",")
			if models == "" {
				models = "all"
			}
			return []string{p.ID, p.Issuer, formatPercent(p.Ratio), modelRatios(p.ModelRatios),
				billing.FormatYuan(p.CapPerYear), lifetime, strings.Join(p.Providers, ","), models,
				formatTime(p.ValidFrom), formatTime(p.ValidTo), p.Rounding, p.Settlement}
		},
	}.command()
}

func modelRatios(m map[string]billing.BasisPoints) string {
	if len(m) == 0 {
		return "-"
	}
	out := make([]string, 0, len(m))
	for model, bp := range m {
		out = append(out, model+"="+formatPercent(bp))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
