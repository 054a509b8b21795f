package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

// programShow is what `program show` prints as JSON: the program and what
// its budget granted each year.
type programShow struct {
	billing.Program
	BudgetSpent map[int]billing.Fen `json:"budget_spent_fen_by_year,omitempty"`
}

func programShowCmd() *cobra.Command {
	d := dbLeaf("show", "show every term of a program, and how much of its budget is spent", "table", "json")
	id := d.Flags().String("id", "", "program id")
	required(d.Command, "id")
	return d.run(withBilling, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		ps, err := st.Programs(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(ps, func(p billing.Program) bool { return p.ID == *id })
		if i < 0 {
			return fmt.Errorf("program show: %w: no program %q", store.ErrBillingNotFound, *id)
		}
		spent, err := st.ProgramBudget(ctx, *id)
		if err != nil {
			return err
		}
		if *d.format == "json" {
			return printJSON(stdout, programShow{ps[i], spent})
		}
		return programTable(stdout, ps[i], spent)
	})
}

// programTable prints a program's terms one a line, in the order billing
// applies them (docs/billing.md).
func programTable(w io.Writer, p billing.Program, spent map[int]billing.Fen) error {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", p.ID)
	row("name", p.Name)
	row("issuer", p.Issuer)
	row("valid (UTC+8)", formatTime(p.ValidFrom)+" to "+formatTime(p.ValidTo))
	for _, prov := range p.Providers {
		when := "whole validity"
		if a, ok := p.Approvals[prov]; ok {
			when = dash(formatTime(a.From)) + " to " + dash(formatTime(a.To))
		}
		row("approved provider", prov+" ("+when+")")
	}
	models := strings.Join(p.Models, ", ")
	if models == "" {
		models = "all"
	}
	row("eligible models", models)
	row("ratio", formatPercent(p.Ratio))
	row("ratio by model", modelRatios(p.ModelRatios))
	for _, c := range slices.Sorted(maps.Keys(p.CategoryTerms)) {
		t := p.CategoryTerms[c]
		v := formatPercent(t.Ratio) + " instead of the ratio (model adjustments on top)"
		if t.CapPerYear > 0 {
			v += ", at most " + billing.FormatYuan(t.CapPerYear) + " CNY a year"
		}
		row("category "+c, v)
	}
	row("cap per entity a year", billing.FormatYuan(p.CapPerYear)+" CNY")
	lifetime := "none"
	if p.CapLifetime > 0 {
		lifetime = billing.FormatYuan(p.CapLifetime) + " CNY"
	}
	row("lifetime cap per entity", lifetime)
	budget := "none"
	if p.BudgetPerYear > 0 {
		budget = billing.FormatYuan(p.BudgetPerYear) + " CNY a year"
		for _, y := range slices.Sorted(maps.Keys(spent)) {
			budget += fmt.Sprintf("; %d: %s CNY spent", y, billing.FormatYuan(spent[y]))
		}
	}
	row("budget", budget)
	term := "until the program ends"
	if p.VoucherTermMonths > 0 {
		term = fmt.Sprintf("%d months from %s", p.VoucherTermMonths, strings.ReplaceAll(p.TermFrom, "_", " "))
	}
	row("voucher term", term)
	row("voucher face", faceBounds(p))
	row("rounding", p.Rounding)
	row("settlement", p.Settlement+": "+settlementWords(p.Settlement))
	return tw.Flush()
}

func faceBounds(p billing.Program) string {
	switch {
	case p.VoucherMin > 0 && p.VoucherMax > 0:
		return billing.FormatYuan(p.VoucherMin) + " to " + billing.FormatYuan(p.VoucherMax) + " CNY"
	case p.VoucherMin > 0:
		return "at least " + billing.FormatYuan(p.VoucherMin) + " CNY"
	case p.VoucherMax > 0:
		return "at most " + billing.FormatYuan(p.VoucherMax) + " CNY"
	}
	return "any"
}

// settlementWords says who pays whom, and when, under a settlement mode.
func settlementWords(s string) string {
	if s == billing.SettlePointOfSale {
		return "the tenant pays the provider its share at the sale; the provider claims the subsidy from the issuer"
	}
	return "the tenant pays the provider the whole cost; the issuer reimburses the tenant the subsidy after the period"
}
