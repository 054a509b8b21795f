package attribution

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// Pod is a container the kubelet allocated a device to.
type Pod struct {
	Namespace string
	Name      string
	Container string
}

// Pods tells which pods hold which devices: the kubelet's PodResources API
// on a node (collectors/kubelet), a scenario's pods in a simulation.
type Pods interface {
	// UnitPods maps canonical GPU-… and MIG-… UUIDs to the containers
	// that hold them. nil when the holder is not known (no kubelet): then
	// namespace rules match nothing and process rules decide.
	UnitPods(ctx context.Context) map[string][]Pod
}

// WithPods gives namespace rules the pods that hold the devices. Without
// it, namespace rules match nothing.
func WithPods(p Pods) Option { return func(a *Attributor) { a.pods = p } }

// podGroups are the template groups of namespace rules, in the order their
// values are passed to template.expand.
var podGroups = []string{"namespace", "pod", "container"}

// checkNamespaceGlob refuses a glob path.Match cannot use, and one with a
// character no namespace has (a DNS label: a-z, 0-9, '-').
func checkNamespaceGlob(glob string) error {
	if _, err := path.Match(glob, ""); err != nil {
		return fmt.Errorf("%q is not a glob: %w", glob, err)
	}
	if strings.ContainsAny(glob, "/ \t\n") {
		return fmt.Errorf("%q: a namespace has no '/' or space", glob)
	}
	return nil
}

// errPodsDisagree is why a unit held by pods of several tenants falls to
// the process rules.
var errPodsDisagree = errors.New("pods of different tenants hold the unit")

// podTenant is the tenant of the unit's holders by the namespace rules,
// the first that matches each holder (Unattributed when that rule's tenant
// is not a valid name). A unit held by several containers
// (time-slicing replicas) has their tenant only when they all agree: the
// kubelet does not say which process is whose. ok is false when no pod
// holds the unit, a holder matches no rule, or they disagree: then the
// process rules decide.
func (a *Attributor) podTenant(ctx context.Context, alloc map[string][]Pod, u device.Unit) (*compiledRule, string, bool) {
	holders := alloc[u.UUID]
	if len(holders) == 0 && u.ParentUUID != "" {
		holders = alloc[u.ParentUUID] // a pod holding the whole GPU holds its instances
	}
	var rule *compiledRule
	tenant := ""
	for _, p := range holders {
		r, t := a.podRule(ctx, p)
		if t == "" {
			return nil, "", false
		}
		if tenant != "" && t != tenant {
			a.log.DebugContext(ctx, "unit left to the process rules", "unit", u.String(),
				"err", errPodsDisagree, "tenants", []string{tenant, t})
			return nil, "", false
		}
		if rule == nil || r.index < rule.index {
			rule = r
		}
		tenant = t
	}
	return rule, tenant, tenant != ""
}

// podRule is the first namespace rule matching p, and the tenant it gives
// ("" when none does or the tenant is not a valid name).
func (a *Attributor) podRule(ctx context.Context, p Pod) (*compiledRule, string) {
	vals := a.vals[:len(podGroups)]
	vals[0], vals[1], vals[2] = p.Namespace, p.Name, p.Container
	for _, r := range a.podRules {
		if ok, _ := path.Match(r.ns, p.Namespace); !ok {
			continue
		}
		t := r.tenant.expand(vals)
		if t == "" {
			continue
		}
		if err := checkTenant(t); err != nil {
			// As for a process rule: the rule claims the pod, with a name
			// no record may carry, so its unit is metered unattributed.
			a.logRefused(ctx, r, t, err)
			return &compiledRule{index: r.index, name: r.name, method: string(MethodUnattributed)}, Unattributed
		}
		return r, t
	}
	return nil, ""
}
