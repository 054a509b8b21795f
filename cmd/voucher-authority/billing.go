package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

// billingUsage is the help of the operator's billing commands
// (docs/billing.md); the HTTP operator API (admin.listen) does the same.
const billingUsage = `
Billing (docs/billing.md). Money is CNY: --*-yuan takes a decimal with at most 2 places
(12.5, 0.07), --*-fen a whole number of fen. TIME is RFC 3339 (2026-11-23T08:00:00Z) or a
date YYYY-MM-DD, meaning that day's midnight China Standard Time (UTC+8), the programs' calendar.
  voucher-authority entity put --db PATH --id ID --name NAME [--related-provider P ...]
  voucher-authority entity list --db PATH [--format table|json]
  voucher-authority tenant map --db PATH --provider P --tenant T --entity ID
  voucher-authority program add --db PATH --file PROGRAM.yaml    (examples in configs/programs/)
  voucher-authority program list --db PATH [--format table|json]
  voucher-authority voucher issue --db PATH --id ID --program ID --holder ENTITY
                    (--face-yuan Y | --face-fen F) --issued TIME --expires TIME
  voucher-authority voucher list --db PATH [--holder ENTITY] [--format table|json]
  voucher-authority voucher suspend|resume|revoke --db PATH --id ID
  voucher-authority ratecard add --db PATH --id ID --provider P --model MODEL [--mig-profile PROFILE]
                    (--price-yuan-per-hour Y | --price-fen-per-hour F) --from TIME [--to TIME]
  voucher-authority ratecard end --db PATH --id ID --at TIME
  voucher-authority ratecard list --db PATH [--provider P] [--format table|json]
  voucher-authority statement --db PATH --entity ID --from TIME --to TIME [--format json|csv|table]
  voucher-authority claim --db PATH --provider P --from TIME --to TIME [--format json|csv|table]
Input the rules refuse exits 2, a conflict (an id that exists, overlapping rate cards) or an
unknown id exits 1; the message names the field or the object.
`

// billingCommands are the first words of the billing commands.
var billingCommands = map[string]bool{
	"entity": true, "tenant": true, "program": true, "voucher": true, "ratecard": true, "statement": true, "claim": true,
}

// cmdBilling dispatches a billing command line (args[0] is in
// billingCommands).
func cmdBilling(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb := ""
	if len(args) > 1 {
		verb = args[1]
	}
	switch args[0] + " " + verb {
	case "entity put":
		return cmdEntityPut(ctx, args[2:], stdout, stderr)
	case "entity list":
		return cmdEntityList(ctx, args[2:], stdout, stderr)
	case "tenant map":
		return cmdTenantMap(ctx, args[2:], stdout, stderr)
	case "program add":
		return cmdProgramAdd(ctx, args[2:], stdout, stderr)
	case "program list":
		return cmdProgramList(ctx, args[2:], stdout, stderr)
	case "voucher issue":
		return cmdVoucherIssue(ctx, args[2:], stdout, stderr)
	case "voucher list":
		return cmdVoucherList(ctx, args[2:], stdout, stderr)
	case "voucher suspend", "voucher resume", "voucher revoke":
		return cmdVoucherStatus(ctx, verb, args[2:], stdout, stderr)
	case "ratecard add":
		return cmdRateCardAdd(ctx, args[2:], stdout, stderr)
	case "ratecard end":
		return cmdRateCardEnd(ctx, args[2:], stdout, stderr)
	case "ratecard list":
		return cmdRateCardList(ctx, args[2:], stdout, stderr)
	}
	switch args[0] {
	case "statement":
		return cmdStatement(ctx, args[1:], stdout, stderr)
	case "claim":
		return cmdClaim(ctx, args[1:], stdout, stderr)
	}
	if verb == "" || strings.HasPrefix(verb, "-") {
		fmt.Fprintf(stderr, "%s: a subcommand is required\n%s", args[0], billingUsage)
	} else {
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0]+" "+verb, billingUsage)
	}
	return exitUsage
}

// withBilling runs fn on the store like withStore, but exits 2 when the
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

// dbFlag is the --db flag of every billing command.
func dbFlag(fs *flag.FlagSet) *string { return fs.String("db", "", dbUsage) }

// formatFlag is --format with its allowed values, the first the default.
func formatFlag(fs *flag.FlagSet, allowed ...string) *string {
	return fs.String("format", allowed[0], strings.Join(allowed, " or "))
}

// checkFormat reports a --format outside allowed.
func checkFormat(stderr io.Writer, cmd, format string, allowed ...string) bool {
	for _, a := range allowed {
		if format == a {
			return true
		}
	}
	fmt.Fprintf(stderr, "%s: --format %q: want %s\n", cmd, format, strings.Join(allowed, ", "))
	return false
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

func cmdEntityPut(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("entity put", flag.ContinueOnError)
	db := dbFlag(fs)
	id := fs.String("id", "", "entity id, e.g. its Unified Social Credit Code")
	name := fs.String("name", "", "legal name")
	var related listFlag
	fs.Var(&related, "related-provider", "provider the entity is a related party of: no program subsidizes its usage there (repeat)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id, "name": *name}) {
		return exitUsage
	}
	e := billing.Entity{ID: *id, Name: *name, RelatedProviders: related}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.PutEntity(ctx, e); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "entity %s (%s) saved", e.ID, e.Name)
		if len(related) > 0 {
			fmt.Fprintf(stdout, "; related party of %s", strings.Join(related, ", "))
		}
		fmt.Fprintln(stdout)
		return nil
	})
}

func cmdEntityList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return listCommand[billing.Entity]{
		name:   "entity list",
		load:   func(st *store.Store, _ string) ([]billing.Entity, error) { return st.Entities(ctx) },
		header: []string{"id", "name", "related providers"},
		row: func(e billing.Entity) []string {
			return []string{e.ID, e.Name, strings.Join(e.RelatedProviders, ",")}
		},
	}.run(ctx, args, stdout, stderr)
}

// listCommand is an `X list` command: --db, an optional filter flag, and
// --format table|json.
type listCommand[T any] struct {
	name               string
	filter, filterHelp string // the filter flag; "" for none
	load               func(st *store.Store, filter string) ([]T, error)
	header             []string
	row                func(T) []string
}

func (c listCommand[T]) run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	db := dbFlag(fs)
	filter := new(string)
	if c.filter != "" {
		filter = fs.String(c.filter, "", c.filterHelp)
	}
	format := formatFlag(fs, "table", "json")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db}) ||
		!checkFormat(stderr, fs.Name(), *format, "table", "json") {
		return exitUsage
	}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		items, err := c.load(st, *filter)
		if err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(stdout, nonNil(items))
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, strings.Join(c.header, "\t"))
		for _, it := range items {
			fmt.Fprintln(tw, strings.Join(c.row(it), "\t"))
		}
		return tw.Flush()
	})
}

func cmdTenantMap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tenant map", flag.ContinueOnError)
	db := dbFlag(fs)
	provider := fs.String("provider", "", "provider whose records carry the tenant label")
	tenant := fs.String("tenant", "", "tenant label, as in the provider's records")
	entity := fs.String("entity", "", "entity id the tenant is")
	if !parse(fs, args, stderr) ||
		!required(stderr, fs.Name(), map[string]string{"db": *db, "provider": *provider, "tenant": *tenant, "entity": *entity}) {
		return exitUsage
	}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.MapTenant(ctx, *provider, *tenant, *entity); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s at %s is entity %s\n", *tenant, *provider, *entity)
		return nil
	})
}
