package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// The billing the recovery test sets up: one provider, one program paying
// half, a rate card of 60 CNY per GPU-hour (1.00 CNY a full minute), acme
// with a voucher that never runs out and globex with one that runs out
// part-way through its usage (its usage is on one node only, so the order
// the authority stores it in is that node's chain both times).
const (
	recProvider   = "e2e-cloud"
	recModel      = "NVIDIA H100 80GB HBM3" // the simulated H100's NVML name, as records carry it
	recAcme       = "91110000MA00000001"
	recGlobex     = "91110000MA00000002"
	recLogWarning = "the authority was restored from a backup and lost acknowledged batches"
)

// TestRestoredAuthorityGetsBackWhatItLost restores the authority's
// database from a backup taken mid-way (docs/operations.md "A restored
// authority") and checks that the agents give it back everything it lost:
// two nodes deliver to an authority with a verifiable log and billing set
// up; the database is backed up while they deliver; more is delivered and
// acknowledged; the authority is stopped, the backup restored, and the
// authority started again. One agent keeps running throughout (it meets
// the restored authority on its next batch), the other is stopped before
// the restore and started after it (it meets it at start). Each agent
// finds the authority's head behind its acknowledged mark, checks the head
// hash and the log, says so at WARN, and sends the lost batches again byte
// for byte: every head comes back with its hash, every record with its id
// and values, nothing doubled, the statements, the claim and the vouchers
// to the fen, and neither agent finds the log inconsistent.
func TestRestoredAuthorityGetsBackWhatItLost(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRestoredAuthority(t, false) })
	t.Run("postgres", func(t *testing.T) { testRestoredAuthority(t, true) })
}

func testRestoredAuthority(t *testing.T, postgres bool) {
	a := NewAuthority(t, AuthorityOptions{Postgres: postgres, Log: true})
	a.BackupTools()
	a.Start()
	a.KeepAddress()
	setUpRecoveryBilling(t, a)
	logKey := fmt.Sprintf("log_key: %q", a.LogKey)
	running := NewNode(t, a, NodeOptions{ID: "e2e-node-1", Provider: recProvider, Speed: 300, Authority: logKey,
		Scenario: OneGPU("GPU-e2e7e000-0000-4000-8000-000000000000")})
	restarted := NewNode(t, a, NodeOptions{ID: "e2e-node-2", Provider: recProvider, Speed: 300, Authority: logKey,
		Scenario: twoGPUs("GPU-e2e7e000-0000-4000-8000-000000000001", "GPU-e2e7e000-0000-4000-8000-000000000002")})
	nodes := []*Node{running, restarted}
	for _, n := range nodes {
		n.Start()
	}

	// The backup, once every node delivered part of its timeline.
	WaitFor(t, 2*time.Minute, "both nodes to deliver part of their timelines", func() bool {
		return len(a.Stored(running.ID)) > 10 && len(a.Stored(restarted.ID)) > 10
	})
	backup := a.Snapshot()
	atBackup := map[string]int64{} // heads now: at least the backup's
	for _, n := range nodes {
		atBackup[n.ID], _ = a.Head(n.ID)
	}
	// The billing period: the scenarios, up to the later end. The
	// authority holds every record that touches it before it stops, so
	// records after the restore never fall in it.
	from, to := running.End().Add(-2*time.Hour), running.End()
	if e := restarted.End(); e.After(to) {
		to = e
	}
	for _, n := range nodes {
		WaitFor(t, 3*time.Minute, n.ID+"'s records up to the billing period's end", func() bool {
			st := a.Stored(n.ID)
			return len(st) > 0 && st[len(st)-1].EndMS >= to.UnixMilli()
		})
	}
	restarted.Agent.Stop()
	a.Proc.Stop()

	// What the authority held and billed before the restore.
	type head struct {
		seq  int64
		hash string
	}
	before := map[string]head{}
	storedBefore := map[string][]StoredRecord{}
	for _, n := range nodes {
		seq, hash := a.Head(n.ID)
		before[n.ID] = head{seq, hash}
		storedBefore[n.ID] = a.Stored(n.ID)
		if seq <= atBackup[n.ID] {
			t.Fatalf("%s: head %d at the stop, %d at the backup: nothing was acknowledged after the backup", n.ID, seq, atBackup[n.ID])
		}
	}
	billingBefore := recoveryBilling(t, a, from, to)

	a.Restore(backup)
	for _, n := range nodes {
		if seq, _ := a.Head(n.ID); seq >= before[n.ID].seq {
			t.Fatalf("%s: the restored database has head %d, the authority had %d: the restore lost nothing", n.ID, seq, before[n.ID].seq)
		}
	}
	a.Start()
	restarted.Start()
	for _, n := range nodes {
		n.Agent.WaitLog(recLogWarning, 2*time.Minute)
	}
	for _, n := range nodes {
		WaitFor(t, 2*time.Minute, n.ID+"'s head back where it was", func() bool {
			seq, _ := a.Head(n.ID)
			return seq >= before[n.ID].seq
		})
	}
	// The running agent goes on delivering: compare up to the old head.
	for _, n := range nodes {
		b := before[n.ID]
		if hash := batchHashAt(t, a, n.ID, b.seq); hash != b.hash {
			t.Errorf("%s: the batch ending at the old head %d has hash %q, was %q", n.ID, b.seq, hash, b.hash)
		}
		stored := a.Stored(n.ID)
		if got := stored[:min(len(stored), len(storedBefore[n.ID]))]; !slices.Equal(got, storedBefore[n.ID]) {
			t.Errorf("%s: the records up to seq %d differ from those before the restore", n.ID, b.seq)
		}
		checkTiled(t, stored)
		SameUsage(t, n.Metered(), stored, n.End(), nil)
	}
	if after := recoveryBilling(t, a, from, to); after != billingBefore {
		t.Errorf("billing before the restore:\n%s\nafter the recovery:\n%s", billingBefore, after)
	}
	for _, n := range nodes {
		if v, ok := n.Metric("gpumeter_log_inconsistent"); !ok || v != 0 {
			t.Errorf("%s: gpumeter_log_inconsistent %v (present %v), want 0:\n%s", n.ID, v, ok, notDebug(n.Agent))
		}
		if v, _ := n.Metric("gpumeter_report_recoveries_total"); v < 1 {
			t.Errorf("%s: gpumeter_report_recoveries_total %v, want at least 1", n.ID, v)
		}
	}
	for _, n := range nodes {
		n.Agent.Stop()
	}
	a.Proc.Stop()
}

// setUpRecoveryBilling sets billing up through the CLI, in the order of
// docs/operations.md "Billing set-up".
func setUpRecoveryBilling(t *testing.T, a *Authority) {
	t.Helper()
	// The store refuses vouchers that expired by the real clock: dates
	// around now, as days of China Standard Time.
	cst := time.FixedZone("CST", 8*3600)
	day := func(d time.Duration) string { return time.Now().Add(d).In(cst).Format(time.DateOnly) }
	from, to := day(-30*24*time.Hour), day(2*365*24*time.Hour)
	program := filepath.Join(t.TempDir(), "program.yaml")
	if err := os.WriteFile(program, []byte("id: e2e-2026\nissuer: Example Bureau\nname: Example voucher\nratio_percent: 50\n"+
		"cap_per_entity_year_yuan: 10000000\nproviders: ["+recProvider+"]\nvalid_from: "+from+"\nvalid_to: "+to+
		"\nrounding: half_up\nsettlement: after_settlement\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"entity", "put", "--id", recAcme, "--name", "Acme Robotics Ltd."},
		{"entity", "put", "--id", recGlobex, "--name", "Globex Ltd."},
		{"tenant", "map", "--provider", recProvider, "--tenant", "acme", "--entity", recAcme},
		{"tenant", "map", "--provider", recProvider, "--tenant", "globex", "--entity", recGlobex},
		{"program", "add", "--file", program},
		{"ratecard", "add", "--id", "e2e-h100", "--provider", recProvider, "--model", recModel,
			"--price-yuan-per-hour", "60", "--from", from},
		// acme uses 50 + 50 minutes: 100 CNY, 50 subsidized.
		{"voucher", "issue", "--id", "v-acme", "--program", "e2e-2026", "--holder", recAcme,
			"--face-yuan", "100000", "--issued", from, "--expires", to},
		// globex uses 30 minutes: 30 CNY, half of which is more than 10.
		{"voucher", "issue", "--id", "v-globex", "--program", "e2e-2026", "--holder", recGlobex,
			"--face-yuan", "10", "--issued", from, "--expires", to},
	} {
		a.MustCLI(append(args, "--db", a.DB)...)
	}
}

// recoveryBilling is what the authority bills over [from, to), as JSON:
// each entity's statement and the provider's claim (their totals, coverage
// and claim per voucher to the fen, and which records they bill) and the
// vouchers' balances. A line's own fen are left out: the cost and subsidy
// carries make every total exact whatever order records arrive in, but
// which line a carried fen lands on follows that order (authority/billing,
// Book.Bill), and a restore changes it. It fails the test unless there is
// something to compare: usage priced, subsidized, and globex's voucher
// spent.
func recoveryBilling(t *testing.T, a *Authority, from, to time.Time) string {
	t.Helper()
	period := []string{"--db", a.DB, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--format", "json"}
	var out []any
	for _, e := range []string{recAcme, recGlobex} {
		js := a.MustCLI(append([]string{"statement", "--entity", e}, period...)...)
		var st billing.Statement
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			t.Fatalf("statement of %s: %v\n%s", e, err, js)
		}
		if st.Totals.Cost <= 0 || st.Totals.Subsidy <= 0 {
			t.Fatalf("statement of %s bills nothing (is the rate card's model %q the records'?): %+v", e, recModel, st.Totals)
		}
		out = append(out, st.Totals, st.Coverage, billedRecords(st.Lines))
	}
	js := a.MustCLI(append([]string{"claim", "--provider", recProvider}, period...)...)
	var cl billing.Claim
	if err := json.Unmarshal([]byte(js), &cl); err != nil {
		t.Fatalf("claim: %v\n%s", err, js)
	}
	// A voucher's amount is compared to the fen, but not how many records
	// drew on it: subsidies are truncated to the fen with a running carry,
	// so a record whose share is under a fen draws 0 or 1 fen depending on
	// the order records arrive in, and a restore changes that order.
	byVoucher := slices.Clone(cl.ByVoucher)
	for i := range byVoucher {
		byVoucher[i].Records = 0
	}
	out = append(out, cl.Totals, byVoucher, cl.Coverage, billedRecords(cl.Lines))
	js = a.MustCLI("voucher", "list", "--db", a.DB, "--format", "json")
	var vouchers []billing.Voucher
	if err := json.Unmarshal([]byte(js), &vouchers); err != nil {
		t.Fatalf("voucher list: %v\n%s", err, js)
	}
	for _, v := range vouchers {
		if v.ID == "v-globex" && v.Balance != 0 {
			t.Fatalf("voucher v-globex has %d fen left: its usage should have spent it", v.Balance)
		}
	}
	out = append(out, vouchers)
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// billedRecords is which records lines bill, and how many milliseconds.
func billedRecords(lines []billing.Line) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, fmt.Sprintf("%s %s %s %d %s", l.RecordID, l.Node, l.Tenant, l.GPUMillis, l.RateCard))
	}
	slices.Sort(out)
	return out
}

// batchHashAt is the hash of the node's stored batch ending at seq.
func batchHashAt(t *testing.T, a *Authority, node string, seq int64) string {
	t.Helper()
	var hash string
	q := `SELECT hash FROM batches WHERE node_id = ` + placeholder(a.driver) + ` AND last_seq = ` +
		map[string]string{"pgx": "$2", "sqlite": "?"}[a.driver]
	if err := a.Open().QueryRow(q, node, seq).Scan(&hash); err != nil {
		t.Fatalf("%s: the batch ending at seq %d: %v", node, seq, err)
	}
	return hash
}
