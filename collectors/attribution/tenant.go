package attribution

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gpumeter/gpumeter/protocol"
)

// errReservedTenant is a tenant spelled like protocol.TenantUnattributed.
var errReservedTenant = errors.New("reserved: it names the usage no rule claims, never billable")

// checkTenant is the rule every tenant a rule yields must follow: the
// wire's name rule (protocol.CheckName), and not the reserved
// "unattributed" in any case or spacing, since the authority refuses or
// never bills such a record. A literal tenant is checked once, at load; a
// templated one each time it is filled (Attributor.match).
func checkTenant(name string) error {
	if strings.EqualFold(strings.TrimSpace(name), protocol.TenantUnattributed) {
		return fmt.Errorf("tenant %q is %w", name, errReservedTenant)
	}
	return protocol.CheckName("tenant", name)
}

// maxRefusedLogged bounds the (rule, tenant) pairs remembered as logged:
// the values come from paths on the host, which may be many.
const maxRefusedLogged = 1024

type refusedKey struct {
	rule   int
	tenant string
}

// logRefused warns once per (rule, value) that a templated tenant was not
// a valid tenant name, so its processes are unattributed: the process is
// re-resolved at every poll (unattributed is not cached), the log line is
// not repeated.
func (a *Attributor) logRefused(ctx context.Context, r *compiledRule, tenant string, err error) {
	k := refusedKey{r.index, tenant}
	if a.refused[k] {
		return
	}
	if len(a.refused) >= maxRefusedLogged {
		if !a.refusedFull {
			a.refusedFull = true
			a.log.WarnContext(ctx, "more rules' tenants are not valid tenant names; no longer logged, their processes are metered as unattributed",
				"logged", len(a.refused))
		}
		return
	}
	a.refused[k] = true
	a.log.WarnContext(ctx, "a rule gave a tenant that is not a valid tenant name: its processes are metered as unattributed",
		"rule", r.index, "rule_name", r.name, "tenant", tenant, "err", err)
}
