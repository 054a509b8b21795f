package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// TestDamagedSpoolIsQuarantinedAndTheChainGoesOn damages the agent's
// spool file on disk while the agent is stopped (it is cut in half, as a
// crash of the file system might leave it) and starts the agent again with
// no operator action: the agent moves the file aside as evidence, starts a
// new spool that continues the chain from the authority's head, records
// the time whose checkpoint was lost as spool_lost gaps, and delivers on
// its own. The authority ends with exactly what was metered, apart from
// those gaps, nothing doubled.
func TestDamagedSpoolIsQuarantinedAndTheChainGoesOn(t *testing.T) {
	a, n := StartOneNode(t, NodeOptions{Scenario: OneGPU("GPU-e2e50000-0000-4000-8000-000000000000"), Speed: 300})
	// Let part of the timeline be delivered, then stop cleanly once the
	// authority holds everything the agent has metered so far.
	WaitFor(t, time.Minute, "some usage delivered", func() bool { return len(a.Stored(n.ID)) > 10 })
	n.Agent.Stop()
	metered := len(n.Metered())
	WaitFor(t, time.Second, "everything metered delivered before the stop", func() bool {
		c := 0
		for _, r := range a.Stored(n.ID) {
			if r.Kind != string(protocol.KindInventory) {
				c++
			}
		}
		return c >= metered
	})

	spool := filepath.Join(n.Dir, "spool.db")
	fi, err := os.Stat(spool)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(spool, fi.Size()/2); err != nil {
		t.Fatal(err)
	}

	p := n.Start()
	p.WaitLog("moved aside", time.Minute)
	a.WaitDelivered(n, 3*time.Minute)
	p.Stop()

	quarantined, _ := filepath.Glob(filepath.Join(n.Dir, "spool.db.corrupt-*"))
	if len(quarantined) != 1 {
		t.Fatalf("quarantined files %v, want the damaged spool kept once", quarantined)
	}
	stored := a.Stored(n.ID)
	checkTiled(t, stored)
	lost := int64(0)
	for _, r := range stored {
		if r.Gap == protocol.GapSpoolLost {
			lost += r.GPUMillis
		}
	}
	if lost == 0 {
		t.Error("no spool_lost gap stored: the time the damaged spool's checkpoint covered is unaccounted for")
	}
	SameUsage(t, n.Metered(), stored, n.End(), func(unit, kind, gap string) bool {
		return gap == protocol.GapSpoolLost
	})
}
