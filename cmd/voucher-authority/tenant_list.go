package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

// tenantListJSON is one tenant of tenant list --format json: the mapping,
// the entity's name, and the vouchers it holds.
type tenantListJSON struct {
	store.TenantMapping
	EntityName string   `json:"entity_name"`
	Vouchers   []string `json:"vouchers"`
}

// tenantListCmd lists the tenant map: which entity each provider's tenant
// label is, with the entity's vouchers (program, balance, status), which
// is what a statement for the tenant draws on.
func tenantListCmd() *cobra.Command {
	d := dbLeaf("list", "list the tenant map: provider, tenant, entity and its vouchers", "table", "json")
	provider := d.Flags().String("provider", "", "only this provider's tenants")
	return d.run(withBilling, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		maps, err := st.TenantMappings(ctx, *provider)
		if err != nil {
			return err
		}
		entities, err := st.Entities(ctx)
		if err != nil {
			return err
		}
		names := map[string]string{}
		for _, e := range entities {
			names[e.ID] = e.Name
		}
		vouchers, err := st.Vouchers(ctx, "")
		if err != nil {
			return err
		}
		held := map[string][]string{} // entity: "id (program, balance CNY, status)"
		for _, v := range vouchers {
			held[v.Holder] = append(held[v.Holder], fmt.Sprintf("%s (%s, %s CNY, %s)", v.ID, v.Program, billing.FormatYuan(v.Balance), v.Status))
		}
		if *d.format == "json" {
			out := make([]tenantListJSON, len(maps))
			for i, m := range maps {
				out[i] = tenantListJSON{TenantMapping: m, EntityName: names[m.Entity], Vouchers: nonNil(held[m.Entity])}
			}
			return printJSON(stdout, out)
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "provider\ttenant\tentity\tname\tvouchers (program, balance, status)")
		for _, m := range maps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", oneLine(m.Provider), oneLine(m.Tenant), oneLine(m.Entity),
				oneLine(names[m.Entity]), dash(strings.Join(held[m.Entity], "; ")))
		}
		return tw.Flush()
	})
}
