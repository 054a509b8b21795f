package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

const (
	testProvider = "example-cloud"
	testGPU      = "GPU-b111b111-0000-4000-8000-000000000001"
	testModel    = "NVIDIA H100 80GB HBM3"
)

// step is one command line and what it must answer.
type step struct {
	name       string
	args       []string
	code       int
	wantOut    string
	wantStderr string
}

func runSteps(t *testing.T, steps []step) {
	t.Helper()
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), s.args, &out, &errb)
			if code != s.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, s.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), s.wantOut) || !strings.Contains(errb.String(), s.wantStderr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", out.String(), s.wantOut, errb.String(), s.wantStderr)
			}
		})
	}
}

// output runs a command that must succeed and returns its stdout.
func output(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// TestBillingCommands sets billing up through the CLI, delivers usage to
// the authority over HTTP, and reads the statement and the claim back
// through the CLI, on each store.
func TestBillingCommands(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		key := testutil.NewKey(t)
		a := authoritytest.New(t, authoritytest.Options{Driver: driver, Nodes: []authoritytest.Node{
			{ID: "n1", Provider: testProvider, PublicKey: key.Public().(ed25519.PublicKey), GPUs: []string{testGPU}},
		}})
		db := dbArg(a, driver)
		testBillingCommands(t, db, a, key)
	})
}

func testBillingCommands(t *testing.T, db string, a *authoritytest.Authority, key ed25519.PrivateKey) {
	dir := t.TempDir()
	now := time.Now()
	// The store refuses vouchers that expired by the real clock: dates
	// around now, as days of China Standard Time.
	day := func(d time.Duration) string { return now.Add(d).In(server.ChinaStandardTime).Format(time.DateOnly) }
	from, to := day(-30*24*time.Hour), day(2*365*24*time.Hour)
	base := now.UTC().Truncate(time.Minute).Add(-10 * time.Minute)

	program := filepath.Join(dir, "program.yaml")
	writeFile(t, program, "id: p1\nissuer: Example Bureau\nname: Example voucher\nratio_percent: 50\n"+
		"cap_per_entity_year_yuan: 10000000\nproviders: ["+testProvider+"]\nvalid_from: "+from+"\nvalid_to: "+to+
		"\nrounding: half_up\nsettlement: after_settlement\n")
	badKey := filepath.Join(dir, "bad-key.yaml")
	writeFile(t, badKey, "id: p2\nissuer: x\nname: x\nratio: 50\n")
	badRatio := filepath.Join(dir, "bad-ratio.yaml")
	writeFile(t, badRatio, strings.Replace(readFile(t, program), "id: p1\n", "id: p2\n", 1)+"\n")
	writeFile(t, badRatio, strings.Replace(readFile(t, badRatio), "ratio_percent: 50", "ratio_percent: 100.01", 1))

	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	runSteps(t, []step{
		{"entity", []string{"entity", "put", "--db", db, "--id", "acme", "--name", "Acme Robotics Ltd."}, 0, "entity acme", ""},
		{"related entity", []string{"entity", "put", "--db", db, "--id", "own", "--name", "Cloud's sister", "--related-provider", testProvider}, 0, "related party of " + testProvider, ""},
		{"entity with a bad id", []string{"entity", "put", "--db", db, "--id", "a b", "--name", "x"}, exitUsage, "", "id"},
		{"entity list", []string{"entity", "list", "--db", db}, 0, "Acme Robotics Ltd.", ""},
		{"tenant", []string{"tenant", "map", "--db", db, "--provider", testProvider, "--tenant", "t1", "--entity", "acme"}, 0, "tenant t1", ""},
		{"tenant of an unknown entity", []string{"tenant", "map", "--db", db, "--provider", testProvider, "--tenant", "t2", "--entity", "nobody"}, 1, "", "nobody"},
		{"program", []string{"program", "add", "--db", db, "--file", program}, 0, "added program p1", ""},
		{"program again", []string{"program", "add", "--db", db, "--file", program}, 1, "", program + ":1: "},
		{"program with an unknown key", []string{"program", "add", "--db", db, "--file", badKey}, exitUsage, "", badKey + ":4: ratio: unknown field"},
		{"program over 100%", []string{"program", "add", "--db", db, "--file", badRatio}, exitUsage, "", badRatio + ":4: ratio_percent: 10001 bp"},
		{"program without file", []string{"program", "add", "--db", db, "--file", filepath.Join(dir, "none.yaml")}, exitUsage, "", "none.yaml"},
		{"program list", []string{"program", "list", "--db", db}, 0, "50%", ""},
		// 60 CNY per GPU-hour: 1.00 CNY a full minute.
		{"rate card", []string{"ratecard", "add", "--db", db, "--id", "h100-a", "--provider", testProvider, "--model", testModel,
			"--price-yuan-per-hour", "60", "--from", from}, 0, "added rate card h100-a", ""},
		{"overlapping rate card", []string{"ratecard", "add", "--db", db, "--id", "h100-b", "--provider", testProvider, "--model", testModel,
			"--price-fen-per-hour", "5000", "--from", rfc(base)}, 1, "", "h100-a"},
		{"negative price", []string{"ratecard", "add", "--db", db, "--id", "h100-c", "--provider", testProvider, "--model", testModel,
			"--price-yuan-per-hour", "-1", "--from", from}, exitUsage, "", "--price-yuan-per-hour: -1 is negative"},
		{"price in a tenth of a fen", []string{"ratecard", "add", "--db", db, "--id", "h100-c", "--provider", testProvider, "--model", testModel,
			"--price-yuan-per-hour", "2.505", "--from", from}, exitUsage, "", "more than 2 decimals"},
		{"rate card with a bad date", []string{"ratecard", "add", "--db", db, "--id", "h100-c", "--provider", testProvider, "--model", testModel,
			"--price-fen-per-hour", "1", "--from", "yesterday"}, exitUsage, "", "--from"},
		{"rate card list", []string{"ratecard", "list", "--db", db, "--provider", testProvider}, 0, "60.00", ""},
		// 1.20 CNY: 50% of three minutes is 1.50, so it runs out.
		{"voucher", []string{"voucher", "issue", "--db", db, "--id", "v1", "--program", "p1", "--holder", "acme",
			"--face-yuan", "1.20", "--issued", from, "--expires", to}, 0, "issued voucher v1", ""},
		{"expired voucher", []string{"voucher", "issue", "--db", db, "--id", "v-old", "--program", "p1", "--holder", "acme",
			"--face-yuan", "1", "--issued", from, "--expires", rfc(now.Add(-time.Hour))}, exitUsage, "", "expires"},
		{"voucher of an unknown program", []string{"voucher", "issue", "--db", db, "--id", "v-x", "--program", "nope", "--holder", "acme",
			"--face-fen", "100", "--issued", from, "--expires", to}, 1, "", "nope"},
		{"voucher with both faces", []string{"voucher", "issue", "--db", db, "--id", "v-x", "--program", "p1", "--holder", "acme",
			"--face-fen", "100", "--face-yuan", "1", "--issued", from, "--expires", to}, exitUsage, "", "exclusive"},
		{"suspend", []string{"voucher", "suspend", "--db", db, "--id", "v1"}, 0, "suspended", ""},
		{"resume", []string{"voucher", "resume", "--db", db, "--id", "v1"}, 0, "v1 is active", ""},
		{"revoke unknown", []string{"voucher", "revoke", "--db", db, "--id", "v-none"}, 1, "", "v-none"},
		{"no subcommand", []string{"voucher"}, exitUsage, "", "subcommand is required"},
		{"unknown subcommand", []string{"ratecard", "delete"}, exitUsage, "", `unknown command "delete" for "voucher-authority ratecard"`},
		{"statement with a bad format", []string{"statement", "--db", db, "--entity", "acme", "--from", from, "--to", to, "--format", "xml"}, exitUsage, "", "--format"},
		{"statement backwards", []string{"statement", "--db", db, "--entity", "acme", "--from", to, "--to", from}, exitUsage, "", "not after"},
	})

	// Three minutes of t1 and one idle minute, delivered to the authority.
	recs := make([]protocol.Record, 0, 4)
	for i := range 3 {
		recs = append(recs, usageRecord(base.Add(time.Duration(i)*time.Minute), "t1", 60000))
	}
	recs = append(recs, usageRecord(base.Add(3*time.Minute), "", 60000))
	deliver(t, a, key, recs)

	period := []string{"--db", db, "--from", rfc(base.Add(-time.Hour)), "--to", rfc(base.Add(time.Hour))}
	var st billing.Statement
	if err := json.Unmarshal([]byte(output(t, append([]string{"statement", "--entity", "acme"}, period...)...)), &st); err != nil {
		t.Fatal(err)
	}
	want := billing.Totals{Records: 3, GPUMillis: 180000, Cost: 300, Subsidy: 120, Payable: 180,
		TenantPaysProvider: 300, Reimbursed: 120} // after_settlement: the tenant pays in full, is reimbursed
	if st.Totals != want || len(st.Lines) != 3 {
		t.Fatalf("statement totals %+v, %d lines; want %+v", st.Totals, len(st.Lines), want)
	}
	if len(st.Coverage) != 1 || st.Coverage[0].GPU != testGPU || st.Coverage[0].ExpectedMillis <= 0 ||
		st.Coverage[0].CoveredMillis > st.Coverage[0].ExpectedMillis {
		t.Errorf("statement coverage %+v, want the one GPU the usage ran on", st.Coverage)
	}
	rows, err := csv.NewReader(strings.NewReader(output(t, append([]string{"statement", "--entity", "acme", "--format", "csv"}, period...)...))).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][0] != "record_id" {
		t.Fatalf("statement CSV: %q, %v", rows, err)
	}
	table := output(t, append([]string{"statement", "--entity", "acme", "--format", "table"}, period...)...)
	for _, w := range []string{"statement of acme", "t1", "h100-a", "0.050", "3.00", "1.20", "1.80", "v1",
		"coverage of the GPUs the usage ran on", testGPU} {
		if !strings.Contains(table, w) {
			t.Errorf("statement table lacks %q:\n%s", w, table)
		}
	}
	claim := output(t, append([]string{"claim", "--provider", testProvider, "--format", "table"}, period...)...)
	for _, w := range []string{"claim of " + testProvider, "p1", "v1", "1.20", "cost 3.00 CNY = subsidy 1.20 CNY",
		"coverage of the provider's GPUs", testGPU} {
		if !strings.Contains(claim, w) {
			t.Errorf("claim table lacks %q:\n%s", w, claim)
		}
	}
	var vs []billing.Voucher
	if err := json.Unmarshal([]byte(output(t, "voucher", "list", "--db", db, "--holder", "acme", "--format", "json")), &vs); err != nil ||
		len(vs) != 1 || vs[0].Balance != 0 || vs[0].Face != 120 {
		t.Errorf("vouchers after the usage: %+v, %v", vs, err)
	}
	var tenants []tenantListJSON
	if err := json.Unmarshal([]byte(output(t, "tenant", "list", "--db", db, "--format", "json")), &tenants); err != nil ||
		len(tenants) != 1 || tenants[0].Provider != testProvider || tenants[0].Tenant != "t1" || tenants[0].Entity != "acme" ||
		tenants[0].EntityName != "Acme Robotics Ltd." || len(tenants[0].Vouchers) != 1 || !strings.HasPrefix(tenants[0].Vouchers[0], "v1 (p1, 0.00 CNY, active)") {
		t.Errorf("tenant list: %+v, %v", tenants, err)
	}
	if tl := output(t, "tenant", "list", "--db", db, "--provider", "another-cloud"); strings.Contains(tl, "t1") {
		t.Errorf("tenant list of another provider:\n%s", tl)
	}
	if tl := output(t, "tenant", "list", "--db", db); !strings.Contains(tl, "t1") || !strings.Contains(tl, "Acme Robotics Ltd.") {
		t.Errorf("tenant list table:\n%s", tl)
	}
	// The node's head advanced with the records: node list shows the
	// last window's end.
	var nodes []nodeListJSON
	if err := json.Unmarshal([]byte(output(t, "node", "list", "--db", db, "--format", "json")), &nodes); err != nil ||
		len(nodes) != 1 || nodes[0].HeadSeq == 0 || nodes[0].LastWindowEnd == nil || nodes[0].LastWindowEnd.Before(base) {
		t.Errorf("node list after delivery: %+v, %v", nodes, err)
	}
}

func usageRecord(start time.Time, tenant string, ms int64) protocol.Record {
	r := protocol.Record{Node: "n1", Provider: testProvider, WindowStart: start, WindowEnd: start.Add(time.Minute),
		Kind: protocol.KindIdle, Tenant: tenant, GPUUUID: testGPU, ParentUUID: testGPU, Model: testModel,
		SliceNum: 1, SliceDen: 1, GPUMillis: ms, UtilizationPercent: -1, EnergyMillijoules: -1}
	if tenant != "" {
		r.Kind, r.Attribution = protocol.KindUsage, "user"
	}
	r.ID = r.ComputeID()
	return r
}

// deliver seals recs as node n1's first batch and posts it to a.
func deliver(t *testing.T, a *authoritytest.Authority, key ed25519.PrivateKey, recs []protocol.Record) {
	t.Helper()
	s, err := ledger.NewSealer("n1", key, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Seal(context.Background(), 1, "", recs)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.HTTP.Client().Post(a.URL+"/v1/batches", "application/json", bytes.NewReader(b.Envelope))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch refused: %d", resp.StatusCode)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const serveToken = "serve-test-token-0123456789abcdef0123456789"

// adminConfig writes a serve config with the operator API on admin
// (host:port) and the token in a file of mode tokenMode.
func adminConfig(t *testing.T, admin string, tokenMode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	writeFile(t, tokenFile, serveToken+"\n")
	if err := os.Chmod(tokenFile, tokenMode); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "authority.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\nstore: {driver: sqlite, path: "+filepath.Join(dir, "a.db")+"}\n"+
		"log: {level: info}\nadmin:\n  listen: \""+admin+"\"\n  token_file: "+tokenFile+"\n")
	return cfg
}

// TestServeStartsTheOperatorAPI runs serve with admin.listen set: the
// operator API answers on its own listener, with the token only, the
// token reads usage on the nodes' API (on loopback), and both stop with
// serve.
func TestServeStartsTheOperatorAPI(t *testing.T) {
	cfg := adminConfig(t, "127.0.0.1:0", 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, io.Discard, &logs) }()

	addr, nodesAddr := "", ""
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "operator API serving" {
				addr = l.Addr
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "voucher authority serving" {
				nodesAddr = l.Addr
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if addr == "" {
		t.Fatalf("no operator API in the log: %s", logs.String())
	}
	get := func(token string) int { return getWith(t, "http://"+addr+"/v1/admin/programs", token) }
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if code := get(serveToken); code != http.StatusOK {
		t.Errorf("with the token: %d", code)
	}
	if code := getWith(t, "http://"+addr+"/console/signin", ""); code != http.StatusOK {
		t.Errorf("the web console's sign-in page on the operator listener: %d", code)
	}
	usage := "http://" + nodesAddr + "/v1/usage?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"
	if code := getWith(t, usage, ""); code != http.StatusUnauthorized {
		t.Errorf("usage on the nodes' API without the token: %d", code)
	}
	if code := getWith(t, usage, serveToken); code != http.StatusOK {
		t.Errorf("usage on the nodes' API with the operators' token: %d", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d: %s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if strings.Contains(logs.String(), serveToken[:20]) {
		t.Error("the log holds the token")
	}
	if !strings.Contains(logs.String(), "bearer token") {
		t.Error("the refused request was not logged")
	}
}

// getWith GETs url with a bearer token ("" = none) and returns the status.
func getWith(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeRefusesAnUnsafeOperatorAPI(t *testing.T) {
	tests := []struct {
		name  string
		admin string
		mode  os.FileMode
		code  int
		want  string
	}{
		{"token readable by others", "127.0.0.1:0", 0o644, exitConfig, "error: admin.token_file: admin token file"},
		// Config errors: refused before anything listens, naming the line.
		{"plain HTTP off loopback", "0.0.0.0:0", 0o600, exitConfig, "authority.yaml:5: admin.listen"},
		{"plain HTTP on every interface", ":0", 0o600, exitConfig, "is not a loopback address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.SyncBuffer
			code := run(context.Background(), []string{"serve", "--config", adminConfig(t, tc.admin, tc.mode)}, io.Discard, &logs)
			if code != tc.code || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("exit %d, want %d with %q: %s", code, tc.code, tc.want, logs.String())
			}
		})
	}
}
