package main

import (
	"bufio"
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testutil"
)

// crashScenario: two GPUs, each used by one tenant for the whole 6 hours,
// so what an uninterrupted run meters is known exactly: all of it.
const crashScenario = `name: crash
start: 2026-01-01T00:00:00Z
duration: 6h
gpus:
  - {model: H100-SXM5-80GB, uuid: GPU-c0000000-0000-4000-8000-000000000000}
  - {model: H100-SXM5-80GB, uuid: GPU-c0000000-0000-4000-8000-000000000001}
tenants:
  acme: {user: acme, uid: 2001}
  globex: {user: globex, uid: 2002}
jobs:
  - {tenant: acme, gpu: 0, start: 0s, end: 6h}
  - {tenant: globex, gpu: 1, start: 0s, end: 6h}
`

var crashGPUs = map[string]string{
	"GPU-c0000000-0000-4000-8000-000000000000": "acme",
	"GPU-c0000000-0000-4000-8000-000000000001": "globex",
}

type agentProc struct {
	cmd   *exec.Cmd
	lines chan string
}

func startAgent(t *testing.T, cfg string) *agentProc {
	t.Helper()
	cmd := testutil.SelfCommand("GPUMETER_TEST_MAIN", "run", "--config", cfg)
	stderr := testutil.StartReadingStderr(t, cmd)
	p := &agentProc{cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // never block the agent on a slow reader
			}
		}
		close(p.lines)
	}()
	return p
}

// waitFor reads the agent's log until a line contains s, and returns it.
func (p *agentProc) waitFor(t *testing.T, s string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("agent exited before logging %q", s)
			}
			if strings.Contains(l, s) {
				return l
			}
		case <-deadline:
			p.cmd.Process.Kill()
			t.Fatalf("agent did not log %q within %s", s, d)
			return ""
		}
	}
}

// TestSIGKILLNeverLosesOrDoublesUsage kills a real agent process with
// SIGKILL at random moments, 50 times, while it meters a simulated node at
// 600x and reports to a real authority (SQLite, real HTTP). Then it lets
// the last run finish and checks what the authority stored:
//   - every sequence number from 1 to the head exactly once;
//   - each GPU's records tile its time with no hole and no overlap, and
//     every window balances (usage + idle + gap = its length);
//   - each tenant's usage plus its GPU's agent_down gaps equals the whole
//     span, which is what an uninterrupted run meters (the tenant holds its
//     GPU throughout): the crashes cost exactly the downtime, as gaps.
func TestSIGKILLNeverLosesOrDoublesUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test in -short mode")
	}
	state, pub := testutil.NodeState(t, t.TempDir())
	gpus := make([]string, 0, len(crashGPUs))
	for g := range crashGPUs {
		gpus = append(gpus, g)
	}
	auth := authoritytest.New(t, authoritytest.Options{
		Nodes: []authoritytest.Node{{ID: "crash-node", Provider: "crash-cloud", PublicKey: pub, GPUs: gpus}},
	})

	scen := writeFile(t, "crash.yaml", crashScenario)
	cfg := writeFile(t, "agent.yaml", testutil.SimAgent{Node: "crash-node", Provider: "crash-cloud", Scenario: scen,
		Rules:     []string{"{user: acme, tenant: acme}", "{user: globex, tenant: globex}"},
		Authority: auth.URL, Timeout: "2s", StateDir: state, Extra: "log: {level: debug}\n"}.YAML())

	rng := rand.New(rand.NewPCG(23, 11))
	const kills = 50
	for i := range kills {
		p := startAgent(t, cfg)
		if i == 0 {
			// Let the first run close a window, so a checkpoint exists.
			p.waitFor(t, "windows closed", 30*time.Second)
		} else {
			p.waitFor(t, "gpumeter running", 30*time.Second)
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // the random moment of the kill
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
	}

	// The last run meters past the scenario's end and stops cleanly.
	anchor, err := os.ReadFile(filepath.Join(state, "sim-anchor.json"))
	if err != nil {
		t.Fatal(err)
	}
	var startVirtual time.Time
	if i := strings.Index(string(anchor), `"start":"`); i >= 0 {
		startVirtual, _ = time.Parse(time.RFC3339Nano, strings.SplitN(string(anchor)[i+9:], `"`, 2)[0])
	}
	end := startVirtual.Add(6 * time.Hour)
	p := startAgent(t, cfg)
	db, err := sql.Open("sqlite", "file:"+auth.DBPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var maxEnd sql.NullInt64
		if err := db.QueryRow(`SELECT MAX(window_end_ms) FROM records`).Scan(&maxEnd); err != nil {
			t.Fatal(err)
		}
		if maxEnd.Valid && maxEnd.Int64 >= end.UnixMilli() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the authority never got records up to the scenario's end %s", end)
		}
		time.Sleep(50 * time.Millisecond) // polling the authority's store
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("last run after SIGTERM: %v", err)
	}

	checkCrashRecords(t, auth.Store, db, end)
}

type storedRecord struct {
	seq                     int64
	unit, kind, tenant, gap string
	start, end, ms          int64
}

func checkCrashRecords(t *testing.T, st *store.Store, db *sql.DB, end time.Time) {
	t.Helper()
	node, err := st.Node(context.Background(), "crash-node")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT seq, gpu_uuid, kind, tenant, gap_reason, window_start_ms, window_end_ms, gpu_ms FROM records ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var recs []storedRecord
	for rows.Next() {
		var r storedRecord
		if err := rows.Scan(&r.seq, &r.unit, &r.kind, &r.tenant, &r.gap, &r.start, &r.end, &r.ms); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Sequence numbers: 1..head, each once.
	if int64(len(recs)) != int64(node.HeadSeq) {
		t.Fatalf("%d records stored, head is %d", len(recs), node.HeadSeq)
	}
	for i, r := range recs {
		if r.seq != int64(i+1) {
			t.Fatalf("record %d has seq %d: a sequence number is missing or doubled", i, r.seq)
		}
	}
	for unit, tenant := range crashGPUs {
		sums := map[testutil.Window]int64{}
		var usage, down, otherGap, idle int64
		for _, r := range recs {
			if r.unit != unit {
				continue
			}
			sums[testutil.Window{Start: r.start, End: r.end}] += r.ms
			switch {
			case r.kind == "usage" && r.tenant == tenant:
				usage += r.ms
			case r.kind == "usage":
				t.Errorf("unit %s: usage of %s, only %s runs there", unit, r.tenant, tenant)
			case r.kind == "gap" && r.gap == "agent_down":
				down += r.ms
			case r.kind == "gap":
				otherGap += r.ms
			case r.kind == "idle":
				idle += r.ms
			}
		}
		wins := testutil.CheckTiled(t, unit, sums)
		span := wins[len(wins)-1].End - wins[0].Start
		if usage+down+otherGap+idle != span {
			t.Errorf("unit %s: usage %d + agent_down %d + other gaps %d + idle %d != span %d", unit, usage, down, otherGap, idle, span)
		}
		// Within the scenario the tenant holds the GPU throughout: idle is
		// only possible after the scenario's end.
		if down == 0 {
			t.Errorf("unit %s: 50 crashes but no agent_down gap", unit)
		}
		t.Logf("unit %s (%s): span %d ms, usage %d, agent_down %d in crashes, other gaps %d, idle after the end %d",
			unit, tenant, span, usage, down, otherGap, idle)
	}
	_ = end
}
