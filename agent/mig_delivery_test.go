package agent_test

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestMIGReconfigurationAccepted: a simulated H100 re-partitioned half way
// through its run (configs/scenarios/mig-reconfigure.yaml) reports both
// layouts in its chain, and a real authority, which judges every MIG record
// by the layout in force during its window and by the GPU's wall time,
// accepts every record the agent produced: the honest path through the
// checks that refuse invented units.
func TestMIGReconfigurationAccepted(t *testing.T) {
	const gpu = "GPU-3c0f1600-0000-4000-8000-000000000000"
	state, pub := nodeState(t)
	auth := authoritytest.New(t, authoritytest.Options{
		// No seeded inventory: the agent's own reports are the only ones.
		Nodes: []authoritytest.Node{{ID: "mig-node", Provider: "test-cloud", PublicKey: pub, GPUs: []string{gpu}, NoInventory: true}},
	})
	out := filepath.Join(t.TempDir(), "records.jsonl")
	scenario, _ := filepath.Abs("../configs/scenarios/mig-reconfigure.yaml")
	cfg := loadConfig(t, testutil.SimAgent{Node: "mig-node", Provider: "test-cloud", Scenario: scenario,
		Rules:     []string{"{user: acme, tenant: acme}", "{cgroup: kubernetes, tenant: globex}"},
		Authority: auth.URL, Timeout: "5s", RecordsFile: out, StateDir: state}.YAML())
	r := startDaemon(t, cfg)
	poll(t, "an hour of virtual time metered", 60*time.Second, func() bool {
		return metrics(t, r.base)["gpumeter_last_cycle_timestamp_seconds"] >= float64(cfgStart(t, state).Add(time.Hour).Unix())
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := testutil.ReadRecords(t, out)
	poll(t, "every record accepted", 30*time.Second, func() bool { return auth.Head(t, "mig-node") == uint64(len(recs)) })

	db, err := sql.Open("sqlite", "file:"+auth.DBPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var layouts, instances, refusals int
	if err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM gpu_layouts WHERE gpu_uuid = ?), (SELECT COUNT(*) FROM gpu_layout_instances WHERE gpu_uuid = ?),
		(SELECT COUNT(*) FROM refusals)`, gpu, gpu).Scan(&layouts, &instances, &refusals); err != nil {
		t.Fatal(err)
	}
	if layouts != 2 || instances != 7+2 || refusals != 0 {
		t.Errorf("authority holds %d layouts with %d instances and %d refusals; want 2 layouts (7 + 2 instances), no refusal", layouts, instances, refusals)
	}
	var want, got int64
	for _, rec := range recs {
		if rec.Kind == protocol.KindUsage {
			want += rec.GPUMillis
		}
	}
	if err := db.QueryRow(`SELECT COALESCE(SUM(gpu_ms), 0) FROM records WHERE kind = 'usage'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != want || want == 0 {
		t.Errorf("authority holds %d ms of usage, the agent metered %d", got, want)
	}
}

// cfgStart is the simulated timeline's start (the anchor in the state
// directory, written when the agent starts).
func cfgStart(t *testing.T, state string) time.Time {
	t.Helper()
	var a struct{ Start time.Time }
	b, err := os.ReadFile(filepath.Join(state, "sim-anchor.json"))
	if err != nil {
		return time.Now().Add(time.Hour) // not yet written: not there yet
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a.Start
}
