package attribution

import (
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// Method says how a tenant was found, and is carried into usage records so
// the authority can weigh how much to trust the attribution.
type Method string

const (
	MethodStatic       Method = "static"       // GPU/MIG UUID assigned to a tenant
	MethodCgroup       Method = "cgroup"       // cgroup path pattern (suffix: preset name)
	MethodUser         Method = "user"         // Unix user or uid of the process
	MethodKubelet      Method = "kubelet"      // the pod the kubelet allocated the unit to
	MethodUnattributed Method = "unattributed" // no rule matched: still metered
)

// Unattributed is the tenant of processes no rule matched, or whose rule
// gave a name that is not a valid tenant. Their GPU time is metered under
// this name, never dropped and never idle. No rule may name it.
const Unattributed = protocol.TenantUnattributed

// Share is one tenant's part of a unit at one observation.
type Share struct {
	Tenant string
	// Method is e.g. "static", "cgroup:kubernetes", "cgroup:pattern", "user".
	Method string
	// Weight is the tenant's part for splitting a unit shared by several
	// tenants at once: the sum of its processes' SM utilization when every
	// process on the unit reports one and at least one is non-zero, else 1
	// per tenant (equal split). Always >= 1.
	Weight int64
	// PIDs are the tenant's processes on the unit (for logs and debugging).
	PIDs []uint32
}

// Observation is one unit at one instant, after attribution: the meter's
// only input.
type Observation struct {
	Unit device.Unit
	// Shares is empty when no compute process runs on the unit (idle), and
	// sorted by Tenant otherwise. One entry per tenant.
	Shares []Share
	// SplitRule is "", "utilization" or "equal": how Shares' weights were
	// made when there are several tenants.
	SplitRule string
}

// Lost reports whether the unit's time is a gap (device lost or unreadable).
func (o Observation) Lost() bool { return o.Unit.Err != nil }
