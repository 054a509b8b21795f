package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/store"
)

// tokenCmd manages the web console's scoped tokens (docs/console.md).
func tokenCmd() *cobra.Command {
	return group("token", "create, list and revoke the web console's scoped tokens",
		tokenCreateCmd(), tokenListCmd(), tokenRevokeCmd())
}

func tokenCreateCmd() *cobra.Command {
	c := leaf("create", "create a console token for a provider's staff or an entity; prints the token once")
	c.Long = `create makes a console token that signs in to the web console as a
provider's staff (--role provider --scope PROVIDER: its nodes, usage and
claims) or an entity (--role entity --scope ENTITY: its statement, vouchers
and usage). The token is printed once, on stdout; the database keeps only
its SHA-256. Hand it over as you would a password.`
	db := dbFlag(c)
	role := c.Flags().String("role", "", "provider or entity")
	scope := c.Flags().String("scope", "", "the provider's name or the entity's id")
	label := c.Flags().String("label", "", "who holds it, for the list (optional)")
	required(c, "role", "scope")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		driver, source := dbSource(*db)
		st, err := store.Open(ctx, driver, source)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure
		}
		defer func() { _ = st.Close() }()
		t, secret, err := st.CreateConsoleToken(ctx, *role, *scope, *label, time.Now())
		if errors.Is(err, store.ErrInvalidBilling) {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure
		}
		fmt.Fprintf(stderr, "console token %s for %s %q created; it is shown once:\n", t.ID, t.Role, t.Scope)
		fmt.Fprintln(stdout, secret)
		return exitOK
	})
}

func tokenListCmd() *cobra.Command {
	d := dbLeaf("list", "list the console tokens (never their secrets)", "table", "json")
	return d.run(withStore, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		ts, err := st.ConsoleTokens(ctx)
		if err != nil {
			return err
		}
		if *d.format == "json" {
			return json.NewEncoder(stdout).Encode(map[string]any{"tokens": ts})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tSCOPE\tLABEL\tCREATED\tREVOKED")
		for _, t := range ts {
			rev := "-"
			if !t.Revoked.IsZero() {
				rev = t.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Scope, t.Label, t.Created.Format(time.RFC3339), rev)
		}
		return tw.Flush()
	})
}

func tokenRevokeCmd() *cobra.Command {
	return idChangeCmd("revoke", "revoke a console token now; its sessions end at once", "id", "the token's id (token list)", withStore,
		func(ctx context.Context, st *store.Store, id string) (string, error) {
			return "console token " + id + " revoked", st.RevokeConsoleToken(ctx, id, time.Now())
		})
}
