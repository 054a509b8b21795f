package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

// The billing commands (docs/billing.md); the HTTP operator API
// (admin.listen) does the same. Input the rules refuse exits 64, a
// conflict (an id that exists, overlapping rate cards) or an unknown id
// exits 1; the message names the field or the object.

func entityCmd() *cobra.Command {
	return group("entity", "the legal entities that hold vouchers and owe charges",
		entityPutCmd(), entityListCmd())
}

func tenantCmd() *cobra.Command {
	return group("tenant", "which entity a provider's tenant label is",
		tenantMapCmd(), tenantListCmd())
}

func programCmd() *cobra.Command {
	return group("program", "voucher programs: who subsidizes what share of which usage",
		programAddCmd(), programListCmd(), programShowCmd())
}

func voucherCmd() *cobra.Command {
	return group("voucher", "issue, list, suspend, resume and revoke vouchers",
		voucherIssueCmd(), voucherListCmd(), voucherStatusCmd("suspend"), voucherStatusCmd("resume"), voucherStatusCmd("revoke"))
}

func ratecardCmd() *cobra.Command {
	return group("ratecard", "providers' prices per GPU-hour",
		rateCardAddCmd(), rateCardEndCmd(), rateCardListCmd())
}

// withBilling runs fn on the store like withStore, but exits 64 when the
// store refuses the input (ErrInvalidBilling): a usage error, as a bad
// flag is.
func withBilling(ctx context.Context, db string, stderr io.Writer, fn func(st *store.Store) error) int {
	var ferr error
	code := withStore(ctx, db, stderr, func(st *store.Store) error {
		ferr = fn(st)
		return ferr
	})
	if code != exitOK && errors.Is(ferr, store.ErrInvalidBilling) {
		return exitUsage
	}
	return code
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func entityPutCmd() *cobra.Command {
	d := dbLeaf("put", "create or update an entity")
	id := d.Flags().String("id", "", "entity id, e.g. its Unified Social Credit Code")
	name := d.Flags().String("name", "", "legal name")
	var related listFlag
	d.Flags().Var(&related, "related-provider", "provider the entity is a related party of: no program subsidizes its usage there (repeat)")
	var categories listFlag
	d.Flags().Var(&categories, "category", "kind of firm the entity is over a period, NAME=FROM..TO or NAME=FROM.. (open), TIMEs as for --from; programs' category_terms name them (repeat)")
	required(d.Command, "id", "name")
	var e billing.Entity
	return d.run(withBilling, func() error {
		e = billing.Entity{ID: *id, Name: *name, RelatedProviders: related}
		for _, spec := range categories {
			cat, err := parseCategory(spec)
			if err != nil {
				return fmt.Errorf("--category %q: %v", spec, err)
			}
			e.Categories = append(e.Categories, cat)
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		if err := st.PutEntity(ctx, e); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "entity %s (%s) saved", e.ID, e.Name)
		if len(related) > 0 {
			fmt.Fprintf(stdout, "; related party of %s", strings.Join(related, ", "))
		}
		for _, c := range e.Categories {
			fmt.Fprintf(stdout, "; %s from %s to %s", c.Name, formatTime(c.From), dash(formatTime(c.To)))
		}
		fmt.Fprintln(stdout)
		return nil
	})
}

func entityListCmd() *cobra.Command {
	return listCommand[billing.Entity]{
		use: "list", short: "list the entities",
		load:   unfiltered((*store.Store).Entities),
		header: []string{"id", "name", "related providers", "categories (UTC+8)"},
		row: func(e billing.Entity) []string {
			cats := make([]string, len(e.Categories))
			for i, c := range e.Categories {
				cats[i] = c.Name + " " + formatTime(c.From) + ".." + formatTime(c.To)
			}
			return []string{e.ID, e.Name, strings.Join(e.RelatedProviders, ","), strings.Join(cats, ", ")}
		},
	}.command()
}

// listCommand is an `X list` command: --db, an optional filter flag, and
// --format table|json.
type listCommand[T any] struct {
	use, short         string
	filter, filterHelp string // the filter flag; "" for none
	load               func(ctx context.Context, st *store.Store, filter string) ([]T, error)
	header             []string
	row                func(T) []string
}

// unfiltered is a listCommand's load for a listing without a filter.
func unfiltered[T any](list func(*store.Store, context.Context) ([]T, error)) func(context.Context, *store.Store, string) ([]T, error) {
	return func(ctx context.Context, st *store.Store, _ string) ([]T, error) { return list(st, ctx) }
}

func (l listCommand[T]) command() *cobra.Command {
	d := dbLeaf(l.use, l.short, "table", "json")
	filter := new(string)
	if l.filter != "" {
		filter = d.Flags().String(l.filter, "", l.filterHelp)
	}
	return runList(d, withBilling, nil, func(ctx context.Context, st *store.Store) ([]T, error) {
		return l.load(ctx, st, *filter)
	}, l.header, l.row)
}

// runList is d.run for a list command: after parse, it loads the items
// and prints them as printList does, in d's --format.
func runList[T any](d *dbCmd, open opener, parse func() error,
	load func(ctx context.Context, st *store.Store) ([]T, error), header []string, row func(T) []string) *cobra.Command {
	return d.run(open, parse, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		items, err := load(ctx, st)
		if err != nil {
			return err
		}
		return printList(stdout, *d.format, items, header, row)
	})
}

// printList prints items as JSON (format json) or as a table: header,
// then row's cells for each item.
func printList[T any](w io.Writer, format string, items []T, header []string, row func(T) []string) error {
	if format == "json" {
		return printJSON(w, nonNil(items))
	}
	tw := newTable(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, it := range items {
		fmt.Fprintln(tw, strings.Join(row(it), "\t"))
	}
	return tw.Flush()
}

func tenantMapCmd() *cobra.Command {
	d := dbLeaf("map", "say which entity a provider's tenant label is")
	provider := d.Flags().String("provider", "", "provider whose records carry the tenant label")
	tenant := d.Flags().String("tenant", "", "tenant label, as in the provider's records")
	entity := d.Flags().String("entity", "", "entity id the tenant is")
	required(d.Command, "provider", "tenant", "entity")
	return d.run(withBilling, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.MapTenant(ctx, *provider, *tenant, *entity), stdout, "tenant %s at %s is entity %s\n", *tenant, *provider, *entity)
	})
}
