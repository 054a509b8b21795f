package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// period is a billing period given by --from and --to, both required:
// parse reads them (a dbCmd's parse step), into from and to.
type period struct {
	fromFlag, toFlag *string
	from, to         time.Time
}

// periodFlags registers --from and --to.
func periodFlags(c *cobra.Command) *period {
	p := &period{
		fromFlag: c.Flags().String("from", "", "period start TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)"),
		toFlag:   c.Flags().String("to", "", "period end TIME, exclusive (RFC 3339, or YYYY-MM-DD: midnight UTC+8)"),
	}
	required(c, "from", "to")
	return p
}

func (p *period) parse() (err error) {
	p.from, p.to, err = server.ParseBillingPeriod(*p.fromFlag, *p.toFlag)
	return err
}

func statementCmd() *cobra.Command {
	return linesCmd("statement", "what an entity owes in a period, and what its vouchers paid", "entity", "entity id",
		func(ctx context.Context, st *store.Store, entity string, from, to time.Time) (linesReport, error) {
			s, err := st.Statement(ctx, entity, from, to)
			if s.Lines == nil {
				s.Lines = []billing.Line{}
			}
			table := func(w io.Writer) error {
				return errors.Join(statementTable(w, s), coverageSection(w, "the GPUs the usage ran on", s.Coverage))
			}
			return linesReport{s.Lines, table, s}, err
		})
}

func claimCmd() *cobra.Command {
	return linesCmd("claim", "what a provider claims from each program in a period", "provider", "provider",
		func(ctx context.Context, st *store.Store, provider string, from, to time.Time) (linesReport, error) {
			c, err := st.Claim(ctx, provider, from, to)
			if c.Lines == nil {
				c.Lines = []billing.Line{}
			}
			if c.ByVoucher == nil {
				c.ByVoucher = []billing.ClaimTotal{}
			}
			table := func(w io.Writer) error {
				return errors.Join(claimTable(w, c), coverageSection(w, "the provider's GPUs", c.Coverage))
			}
			return linesReport{c.Lines, table, c}, err
		})
}

// linesReport is a statement or a claim in the CLI's three formats.
type linesReport struct {
	lines []billing.Line        // csv
	table func(io.Writer) error // table
	json  any                   // json
}

// linesCmd is statement or claim: --db, --KEY, --from, --to, --format.
func linesCmd(name, short, key, keyHelp string,
	load func(ctx context.Context, st *store.Store, key string, from, to time.Time) (linesReport, error)) *cobra.Command {
	d := dbLeaf(name, short, "json", "csv", "table")
	keyVal := d.Flags().String(key, "", keyHelp)
	p := periodFlags(d.Command)
	required(d.Command, key)
	return d.run(withBilling, p.parse, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		r, err := load(ctx, st, *keyVal, p.from, p.to)
		if err != nil {
			return err
		}
		switch *d.format {
		case "csv":
			return billing.WriteLinesCSV(stdout, r.lines)
		case "table":
			return r.table(stdout)
		}
		return printJSON(stdout, r.json)
	})
}

// lineGroup sums the lines of one row of a statement table.
type lineGroup struct {
	key                          [8]string // tenant, provider, model, MIG profile, rate card, program, note, review
	records                      int
	gpuMs                        int64
	cost, subsidy, held, payable billing.Fen
}

// statementTable prints a statement summed per tenant, provider, model,
// rate card, program, note and review state, then what each voucher paid,
// in GPU-hours and CNY (integer arithmetic throughout). Held subsidies are
// a column of their own, in neither the subsidy nor the payable.
func statementTable(w io.Writer, s billing.Statement) error {
	fmt.Fprintf(w, "statement of %s, %s to %s (UTC+8)\n", s.Entity, formatTime(s.From), formatTime(s.To))
	groups := map[[8]string]*lineGroup{}
	byVoucher := map[string]billing.Fen{}
	for _, l := range s.Lines {
		note := l.Note
		if l.Limit != "" {
			note += " (" + l.Limit + ")"
		}
		k := [8]string{l.Tenant, l.Provider, l.Model, l.MIGProfile, l.RateCard, l.Program, note, l.Review}
		g := groups[k]
		if g == nil {
			g = &lineGroup{key: k}
			groups[k] = g
		}
		g.records++
		g.gpuMs += l.GPUMillis
		g.cost += l.Cost
		g.subsidy += l.Subsidy
		g.held += l.Held
		g.payable += l.Payable
		if !billing.Paid(l.Review) {
			continue // held grants are listed apart; rejected ones are gone
		}
		for _, gr := range l.Grants {
			byVoucher[gr.Voucher] += gr.Amount
		}
	}
	rows := make([]*lineGroup, 0, len(groups))
	for _, g := range groups {
		rows = append(rows, g)
	}
	sort.Slice(rows, func(i, j int) bool {
		for n := range rows[i].key {
			if rows[i].key[n] != rows[j].key[n] {
				return rows[i].key[n] < rows[j].key[n]
			}
		}
		return false
	})
	tw := newTable(w)
	fmt.Fprintln(tw, "tenant\tprovider\tmodel\trate card\tprogram\tnote\treview\trecords\tGPU-hours\tcost CNY\tsubsidy CNY\theld CNY\tpayable CNY")
	for _, g := range rows {
		k := g.key
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", k[0], k[1], k[2]+profileSuffix(k[3]), dash(k[4]), dash(k[5]),
			k[6], dash(k[7]), g.records, protocol.FormatHours(g.gpuMs), billing.FormatYuan(g.cost), billing.FormatYuan(g.subsidy),
			billing.FormatYuan(g.held), billing.FormatYuan(g.payable))
	}
	t := s.Totals
	fmt.Fprintf(tw, "total\t\t\t\t\t\t\t%d\t%s\t%s\t%s\t%s\t%s\n", t.Records, protocol.FormatHours(t.GPUMillis),
		billing.FormatYuan(t.Cost), billing.FormatYuan(t.Subsidy), billing.FormatYuan(t.Held), billing.FormatYuan(t.Payable))
	if err := tw.Flush(); err != nil {
		return err
	}
	reviewNotes(w, t)
	termNotes(w, t)
	if len(byVoucher) > 0 {
		ids := make([]string, 0, len(byVoucher))
		for id := range byVoucher {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		tw = newTable(w)
		fmt.Fprintln(tw, "voucher\tpaid CNY")
		for _, id := range ids {
			fmt.Fprintf(tw, "%s\t%s\n", id, billing.FormatYuan(byVoucher[id]))
		}
		return tw.Flush()
	}
	return nil
}

// claimTable prints what a provider claims from each program, voucher by
// voucher, and the period's totals.
func claimTable(w io.Writer, c billing.Claim) error {
	fmt.Fprintf(w, "claim of %s, %s to %s (UTC+8)\n", c.Provider, formatTime(c.From), formatTime(c.To))
	tw := newTable(w)
	fmt.Fprintln(tw, "program\tvoucher\tsettlement\tissuer pays\trecords\tsubsidy CNY")
	var claimed billing.Fen
	for _, v := range c.ByVoucher {
		payee := "provider"
		if v.Settlement != billing.SettlePointOfSale {
			payee = "tenant"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", v.Program, v.Voucher, dash(v.Settlement), payee, v.Records, billing.FormatYuan(v.Amount))
		claimed += v.Amount
	}
	fmt.Fprintf(tw, "total\t\t\t\t\t%s\n", billing.FormatYuan(claimed))
	if err := tw.Flush(); err != nil {
		return err
	}
	t := c.Totals
	fmt.Fprintf(w, "%d usage records, %s GPU-hours: cost %s CNY = subsidy %s CNY (from programs) + held %s CNY (in review) + payable %s CNY (from tenants)\n",
		t.Records, protocol.FormatHours(t.GPUMillis), billing.FormatYuan(t.Cost), billing.FormatYuan(t.Subsidy),
		billing.FormatYuan(t.Held), billing.FormatYuan(t.Payable))
	reviewNotes(w, t)
	termNotes(w, t)
	return nil
}

// reviewNotes says what the totals leave unpriced, held or rejected.
func reviewNotes(w io.Writer, t billing.Totals) {
	if t.Unpriced > 0 {
		fmt.Fprintf(w, "%d usage records had no rate card in force: unpriced, cost 0\n", t.Unpriced)
	}
	if t.HeldRecords > 0 {
		fmt.Fprintf(w, "%d usage records have their subsidy (%s CNY) held for review: neither claimable nor owed until decided (voucher-authority review list)\n",
			t.HeldRecords, billing.FormatYuan(t.Held))
	}
	if t.RejectedRecords > 0 {
		fmt.Fprintf(w, "%d usage records had their subsidy rejected in review: subsidy 0, the tenant owes the cost\n", t.RejectedRecords)
	}
}

// termNotes says who pays whom under the programs' settlement, and which
// program terms bit in the period.
func termNotes(w io.Writer, t billing.Totals) {
	fmt.Fprintf(w, "settlement: tenants pay the provider %s CNY; the provider claims %s CNY from issuers (point of sale); issuers reimburse tenants %s CNY (after settlement)\n",
		billing.FormatYuan(t.TenantPaysProvider), billing.FormatYuan(t.ProviderClaims), billing.FormatYuan(t.Reimbursed))
	for _, n := range []struct {
		count int
		what  string
	}{
		{t.SplitRecords, "straddled a voucher's, program's or rate card's boundary and were billed in pieces"},
		{t.CapRecords, "were cut by an entity's yearly or lifetime cap"},
		{t.BudgetRecords, "were cut or refused by a program's spent yearly budget"},
		{t.ApprovalRecords, "ran at a provider the program did not approve at the time"},
	} {
		if n.count > 0 {
			fmt.Fprintf(w, "%d usage records %s\n", n.count, n.what)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
