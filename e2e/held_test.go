package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// twoGPUs is OneGPU with a second GPU that tenant globex uses from the
// tenth to the fortieth minute.
func twoGPUs(first, second string) *Scenario {
	return &Scenario{
		YAML: fmt.Sprintf(`name: e2e-two-gpus
start: 2026-01-01T00:00:00Z
duration: 1h
gpus:
  - {model: H100-SXM5-80GB, uuid: %s}
  - {model: H100-SXM5-80GB, uuid: %s}
tenants:
  acme: {user: acme, uid: 2001}
  globex: {user: globex, uid: 2002}
jobs:
  - {tenant: acme, gpu: 0, start: 5m, end: 55m}
  - {tenant: globex, gpu: 1, start: 10m, end: 40m}
attribution:
  rules:
    - {user: acme, tenant: acme}
    - {user: globex, tenant: globex}
`, first, second),
		GPUs:     map[string]string{first: "H100-SXM5-80GB", second: "H100-SXM5-80GB"},
		Duration: time.Hour,
	}
}

// TestUnregisteredGPUIsHeldUntilRegistered: the operator registered the
// node without its second GPU. The agent's usage of it is held (kept in
// the spool and sent again, never dead-lettered) until the operator runs
// `voucher-authority node add-gpu`; then everything goes through and the
// authority ends with exactly the usage the agent metered.
func TestUnregisteredGPUIsHeldUntilRegistered(t *testing.T) {
	const gpu0, gpu1 = "GPU-e2e00000-0000-4000-8000-000000000000", "GPU-e2e00000-0000-4000-8000-000000000001"
	a, n := StartOneNode(t, NodeOptions{Scenario: twoGPUs(gpu0, gpu1), Unregistered: []string{gpu1}})
	line := n.Agent.WaitLog("authority holds the batch back", time.Minute)
	if !strings.Contains(line, "gpu-not-registered") || !strings.Contains(line, "voucher-authority node add-gpu") {
		t.Errorf("held log line does not name the cause and the command:\n%s", line)
	}
	// Let the whole timeline be metered while held: nothing dead-lettered.
	WaitFor(t, time.Minute, "the scenario metered", func() bool {
		for _, r := range n.Metered() {
			if !r.WindowEnd.Before(n.End()) {
				return true
			}
		}
		return false
	})
	if _, dead := n.Agent.find("dead-lettered"); dead {
		t.Fatalf("a held batch was dead-lettered:\n%s", n.Agent.Tail(40))
	}

	// The GPU served since the node did: --since says so (without it, its
	// usage so far would be before its registration, and stay held).
	a.MustCLI("node", "add-gpu", "--db", a.DB, "--id", n.ID, "--gpu", gpu1, "--model", "H100-SXM5-80GB", "--since", n.Since())
	var accepted bool
	WaitFor(t, 2*time.Minute, "the held batch accepted, or held for another cause", func() bool {
		_, accepted = n.Agent.find("the authority accepted the held batch")
		_, layout := n.Agent.find(`"cause":"no-inventory"`)
		return accepted || layout
	})
	if !accepted {
		// The inventory that reported the GPU came before add-gpu and is
		// never sent again: the authority must have kept its layout.
		t.Fatalf("after add-gpu the held batch was refused no-inventory, not accepted:\n%s", n.Agent.Tail(40))
	}
	a.WaitDelivered(n, 2*time.Minute)
	n.Agent.Stop()
	if _, dead := n.Agent.find("dead-lettered"); dead {
		t.Errorf("a batch was dead-lettered:\n%s", n.Agent.Tail(40))
	}
	stored := a.Stored(n.ID)
	SameUsage(t, n.Metered(), stored, n.End(), nil)
	if got, want := UsageMillis(stored)["globex"], int64(30*time.Minute/time.Millisecond); got < want-5000 || got > want+5000 {
		t.Errorf("globex: %d ms stored, want %d ± 5 s (its 30 minutes on the GPU registered late)", got, want)
	}
}
