package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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

	// Cut the file in half of what its pages use: bbolt grows the file
	// ahead of its pages (up to double), so half the file's size can be
	// free space, whose loss damages nothing.
	spool := filepath.Join(n.Dir, "spool.db")
	if err := os.Truncate(spool, usedBytes(t, spool)/2); err != nil {
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

// usedBytes is how much of the bbolt file at path its pages use (the
// high-water mark), read with the file closed by everyone else.
func usedBytes(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var size int64
	if err := db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	return size
}
