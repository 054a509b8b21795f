package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestAuditAndReviewCommands: a refused batch is in `audit list` and
// `audit show`; held subsidies are in `review list`, apart on the
// statement, and decided once by `review approve|reject`.
func TestAuditAndReviewCommands(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		key := testutil.NewKey(t)
		a := authoritytest.New(t, authoritytest.Options{Driver: driver, Nodes: []authoritytest.Node{
			{ID: "n1", Provider: testProvider, PublicKey: key.Public().(ed25519.PublicKey), GPUs: []string{testGPU}},
		}})
		db := dbArg(a, driver)
		now := time.Now().UTC().Truncate(time.Second)
		st := a.Store
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(st.PutEntity(ctx, billing.Entity{ID: "acme", Name: "Acme"}))
		must(st.MapTenant(ctx, testProvider, "t1", "acme"))
		must(st.AddProgram(ctx, billing.Program{ID: "p1", Issuer: "x", Name: "x", Ratio: 5000, CapPerYear: 1_000_000,
			Providers: []string{testProvider}, ValidFrom: now.AddDate(-1, 0, 0), ValidTo: now.AddDate(1, 0, 0),
			Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}))
		must(st.AddRateCard(ctx, billing.RateCard{ID: "h100", Provider: testProvider, Model: testModel, PricePerHour: 6000,
			ValidFrom: now.AddDate(-1, 0, 0)}))
		must(st.IssueVoucher(ctx, billing.Voucher{ID: "v1", Program: "p1", Holder: "acme", Face: 1000,
			Issued: now.AddDate(-1, 0, 0), Expires: now.AddDate(1, 0, 0)}))
		// Three minutes of t1 at 1.00 CNY, 0.50 subsidized each.
		base := now.Truncate(time.Minute).Add(-10 * time.Minute)
		var recs []protocol.Record
		for i := range 3 {
			recs = append(recs, usageRecord(base.Add(time.Duration(i)*time.Minute), "t1", 60000))
		}
		deliver(t, a, key, recs)
		a.HoldReview(t, recs[0].ID, "energy 0 mJ", time.Now())
		a.HoldReview(t, recs[1].ID, "utilization 0%", time.Now())
		garbage := []byte(`{"payload": "not a batch"`)
		resp, err := a.HTTP.Client().Post(a.URL+"/v1/batches", "application/json", bytes.NewReader(garbage))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("garbage: %d", resp.StatusCode)
		}

		var refs []store.Refusal
		if err := json.Unmarshal([]byte(output(t, "audit", "list", "--db", db, "--format", "json")), &refs); err != nil || len(refs) != 1 {
			t.Fatalf("audit list: %+v, %v", refs, err)
		}
		id := strconv.FormatInt(refs[0].ID, 10)
		envFile := filepath.Join(t.TempDir(), "envelope.json")
		period := []string{"--db", db, "--from", base.Add(-time.Hour).Format(time.RFC3339), "--to", base.Add(time.Hour).Format(time.RFC3339)}
		runSteps(t, []step{
			{"audit list", []string{"audit", "list", "--db", db}, 0, "(unauthenticated)", ""},
			{"audit list by cause", []string{"audit", "list", "--db", db, "--cause", "malformed", "--since", base.Format(time.DateOnly)}, 0, "malformed", ""},
			{"audit list node and unauthenticated", []string{"audit", "list", "--db", db, "--node", "n1", "--unauthenticated"}, exitUsage, "", "exclude"},
			{"audit list limit 0", []string{"audit", "list", "--db", db, "--limit", "0"}, exitUsage, "", "--limit"},
			{"audit list bad since", []string{"audit", "list", "--db", db, "--since", "yesterday"}, exitUsage, "", "--since"},
			{"audit show", []string{"audit", "show", "--db", db, "--id", id, "--envelope-out", envFile}, 0, `"sha256"`, ""},
			{"audit show again to the same file", []string{"audit", "show", "--db", db, "--id", id, "--envelope-out", envFile}, 1, "", "--envelope-out"},
			{"audit show unknown", []string{"audit", "show", "--db", db, "--id", "999"}, 1, "", "refusal not found"},
			{"audit show bad id", []string{"audit", "show", "--db", db, "--id", "x"}, exitUsage, "", "--id"},
			{"audit alone", []string{"audit"}, exitUsage, "", "subcommand is required"},
			{"review list", []string{"review", "list", "--db", db, "--status", "held", "--entity", "acme"}, 0, "1.00 CNY of them still held", ""},
			{"review list bad status", []string{"review", "list", "--db", db, "--status", "pending"}, exitUsage, "", "status"},
			{"statement with held subsidies", append([]string{"statement", "--entity", "acme", "--format", "table"}, period...), 0, "held CNY", ""},
			{"reject without a note", []string{"review", "reject", "--db", db, "--record", recs[0].ID, "--by", "alice"}, exitUsage, "", `required flag(s) "note" not set`},
			{"reject with a blank note", []string{"review", "reject", "--db", db, "--record", recs[0].ID, "--by", "alice", "--note", " "}, exitUsage, "", "--note must say why"},
			{"reject", []string{"review", "reject", "--db", db, "--record", recs[0].ID, "--by", "alice", "--note", "no work"}, 0, "0.50 CNY returned", ""},
			{"reject twice", []string{"review", "reject", "--db", db, "--record", recs[0].ID, "--by", "bob", "--note", "again"}, 1, "", "already decided"},
			{"approve", []string{"review", "approve", "--db", db, "--record", recs[1].ID, "--by", "bob"}, 0, "approved by bob", ""},
			{"approve a record not held", []string{"review", "approve", "--db", db, "--record", recs[2].ID, "--by", "bob"}, 1, "", "review not found"},
			{"review list after", []string{"review", "list", "--db", db}, 0, "0.00 CNY of them still held", ""},
			{"audit actions: the rejection", []string{"audit", "actions", "--db", db, "--action", "review reject"}, 0, recs[0].ID, ""},
			{"audit actions: the approval", []string{"audit", "actions", "--db", db, "--action", "review approve", "--node", "n1"}, 0, recs[1].ID, ""},
			{"statement after", append([]string{"statement", "--entity", "acme", "--format", "table"}, period...), 0, "subsidy rejected in review", ""},
		})
		if b, err := os.ReadFile(envFile); err != nil || !bytes.Equal(b, garbage) {
			t.Errorf("--envelope-out wrote %q, %v", b, err)
		}
		var s billing.Statement
		if err := json.Unmarshal([]byte(output(t, append([]string{"statement", "--entity", "acme"}, period...)...)), &s); err != nil {
			t.Fatal(err)
		}
		if want := (billing.Totals{Records: 3, GPUMillis: 180000, Cost: 300, Subsidy: 100, Payable: 200, RejectedRecords: 1,
			TenantPaysProvider: 300, Reimbursed: 100}); s.Totals != want {
			t.Errorf("statement totals %+v, want %+v", s.Totals, want)
		}
	})
}
