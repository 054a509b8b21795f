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
	c := leaf("put", "create or update an entity")
	db := dbFlag(c)
	id := c.Flags().String("id", "", "entity id, e.g. its Unified Social Credit Code")
	name := c.Flags().String("name", "", "legal name")
	var related listFlag
	c.Flags().Var(&related, "related-provider", "provider the entity is a related party of: no program subsidizes its usage there (repeat)")
	var categories listFlag
	c.Flags().Var(&categories, "category", "kind of firm the entity is over a period, NAME=FROM..TO or NAME=FROM.. (open), TIMEs as for --from; programs' category_terms name them (repeat)")
	required(c, "id", "name")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		e := billing.Entity{ID: *id, Name: *name, RelatedProviders: related}
		for _, spec := range categories {
			cat, err := parseCategory(spec)
			if err != nil {
				fmt.Fprintf(stderr, "entity put: --category %q: %v\n", spec, err)
				return exitUsage
			}
			e.Categories = append(e.Categories, cat)
		}
		return withBilling(ctx, *db, stderr, func(st *store.Store) error {
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
	})
}

func entityListCmd() *cobra.Command {
	return listCommand[billing.Entity]{
		use: "list", short: "list the entities",
		load: func(ctx context.Context, st *store.Store, _ string) ([]billing.Entity, error) {
			return st.Entities(ctx)
		},
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

func (l listCommand[T]) command() *cobra.Command {
	c := leaf(l.use, l.short)
	db := dbFlag(c)
	filter := new(string)
	if l.filter != "" {
		filter = c.Flags().String(l.filter, "", l.filterHelp)
	}
	format := formatFlag(c, "table", "json")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		if !checkFormat(stderr, c.Parent().Name()+" "+l.use, *format, "table", "json") {
			return exitUsage
		}
		return withBilling(ctx, *db, stderr, func(st *store.Store) error {
			items, err := l.load(ctx, st, *filter)
			if err != nil {
				return err
			}
			return printList(stdout, *format, items, l.header, l.row)
		})
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
	c := leaf("map", "say which entity a provider's tenant label is")
	db := dbFlag(c)
	provider := c.Flags().String("provider", "", "provider whose records carry the tenant label")
	tenant := c.Flags().String("tenant", "", "tenant label, as in the provider's records")
	entity := c.Flags().String("entity", "", "entity id the tenant is")
	required(c, "provider", "tenant", "entity")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		return withBilling(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.MapTenant(ctx, *provider, *tenant, *entity); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "tenant %s at %s is entity %s\n", *tenant, *provider, *entity)
			return nil
		})
	})
}
