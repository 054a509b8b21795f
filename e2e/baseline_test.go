package e2e

import (
	"testing"
	"time"
)

// TestDeliversExactlyWhatWasMetered is the baseline every fault test
// departs from: no fault, the authority ends with exactly the usage the
// agent metered (SameUsage: the exact check), and the tenant's usage is
// about the scenario's 50 minutes. Metered in real time at 300x, a job's
// start or end is seen at the first poll after it, so a stall of the
// machine of d shifts it by 300*d of simulated time: a 100 ms stall on a
// loaded 2-core runner is 30 s, the tolerance here.
func TestDeliversExactlyWhatWasMetered(t *testing.T) {
	a, n := StartOneNode(t, NodeOptions{Scenario: OneGPU("GPU-e2e00000-0000-4000-8000-000000000000"), Speed: 300})
	a.WaitDelivered(n, 2*time.Minute)
	n.Agent.Stop()
	stored := a.Stored(n.ID)
	SameUsage(t, n.Metered(), stored, n.End(), nil)
	got, want := UsageMillis(stored)["acme"], int64(50*time.Minute/time.Millisecond)
	if d := got - want; d < -30000 || d > 30000 {
		t.Errorf("acme: %d ms stored, want %d ± 30 s (the scenario's 50 minutes)", got, want)
	}
}
