package e2e

import (
	"testing"
	"time"
)

// TestDeliversExactlyWhatWasMetered is the baseline every fault test
// departs from: no fault, the authority ends with exactly the usage the
// agent metered, and the tenant's usage is the scenario's 50 minutes (to a
// few simulated seconds: at 600x a millisecond of scheduling delay is 0.6
// s of simulated time; the exact check is SameUsage).
func TestDeliversExactlyWhatWasMetered(t *testing.T) {
	a, n := StartOneNode(t, NodeOptions{Scenario: OneGPU("GPU-e2e00000-0000-4000-8000-000000000000")})
	a.WaitDelivered(n, 2*time.Minute)
	n.Agent.Stop()
	stored := a.Stored(n.ID)
	SameUsage(t, n.Metered(), stored, n.End(), nil)
	got, want := UsageMillis(stored)["acme"], int64(50*time.Minute/time.Millisecond)
	if d := got - want; d < -5000 || d > 5000 {
		t.Errorf("acme: %d ms stored, want %d ± 5 s (the scenario's 50 minutes)", got, want)
	}
}
