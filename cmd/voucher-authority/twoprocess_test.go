package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// authorityProc is a `voucher-authority serve` process (this test binary
// run as main; see TestMain).
type authorityProc struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, once done

	mu   sync.Mutex
	tail []string // its last log lines, for failure messages
}

// startAuthority starts serve with cfg and waits until it listens. The
// process is stopped (SIGTERM, then waited for) when t ends.
func startAuthority(t *testing.T, cfg string) *authorityProc {
	t.Helper()
	cmd := testutil.SelfCommand("VOUCHER_AUTHORITY_TEST_MAIN", "serve", "--config", cfg)
	stderr := testutil.StartReadingStderr(t, cmd)
	p := &authorityProc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		// Read to EOF so the process never blocks on its log.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "voucher authority serving" {
				addr <- l.Addr
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
			t.Errorf("authority %s did not stop on SIGTERM", p.url)
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		t.Fatalf("authority exited before serving: %v\n%s", p.err, p.logTail())
	case <-time.After(60 * time.Second):
		t.Fatalf("authority not serving after 60s\n%s", p.logTail())
	}
	return p
}

func (p *authorityProc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop ends the process with SIGTERM and says whether it exited cleanly.
func (p *authorityProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("authority %s did not stop on SIGTERM", p.url)
	}
	if p.err != nil {
		t.Errorf("authority %s: %v\n%s", p.url, p.err, p.logTail())
	}
}

// answer is POST /v1/batches' or GET /v1/nodes/{id}/head's answer.
type answer struct {
	status    int
	Head      uint64 `json:"head"`
	HeadHash  string `json:"head_hash"`
	Duplicate bool   `json:"duplicate"`
	Type      string `json:"type"`
	Detail    string `json:"detail"`
}

func call(c *http.Client, method, u string, body []byte) (answer, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &a); err != nil {
		return answer{}, fmt.Errorf("%s %s: %d %q: %w", method, u, resp.StatusCode, raw, err)
	}
	return a, nil
}

// signedHead asks GET /v1/nodes/{id}/head, signed with the node's key.
func signedHead(c *http.Client, base, id string, key ed25519.PrivateKey) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/nodes/"+id+"/head", nil)
	if err != nil {
		return answer{}, err
	}
	keyID := signing.KeyID(key.Public().(ed25519.PublicKey))
	req.Header.Set("Authorization", protocol.SignRead(key, keyID, req.Method, req.URL.RequestURI(), time.Now()))
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return answer{}, fmt.Errorf("head of %s: %d: %w", id, resp.StatusCode, err)
	}
	return a, nil
}

// metric reads one series' value from a /metrics page (0 if absent).
func metric(t *testing.T, c *http.Client, base, series string) float64 {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestTwoProcessesOnePostgres is what the store must hold under load: two
// authority processes on one PostgreSQL database, with several nodes'
// chains posted to both at once, each batch several times. Every batch and
// record is stored exactly once, every other answer is a duplicate,
// nothing is refused, and both processes and the database agree on every
// node's head and chain. Billing runs in the same race: one entity's
// tenants on all nodes draw on two small vouchers that run out, and no
// record is subsidized twice nor any voucher overdrawn.
func TestTwoProcessesOnePostgres(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()

	// The config carries the DSN without its password, which is in a 0600
	// file, as configs/authority.yaml says to run it.
	bare, pwFile, hasPw := splitPassword(t, dir, dsn)
	cfgFile := func(name string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf("listen: 127.0.0.1:0\nstore:\n  driver: postgres\n  dsn: %q\n  password_file: %s\n", bare, pwFile)
		if !hasPw {
			cfg = fmt.Sprintf("listen: 127.0.0.1:0\nstore:\n  driver: postgres\n  dsn: %q\n", bare)
		}
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	const (
		nodes   = 4
		batches = 10
		perB    = 20 // records per batch: one GPU, one per minute
		senders = 4  // per node, each posting the whole chain in order
	)
	// Windows end well before now: the processes judge future windows by
	// the real clock.
	base := time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(batches*perB+60) * time.Minute)
	type node struct {
		id    string
		key   ed25519.PrivateKey // signs its head reads
		chain []ledger.Sealed
	}
	ns := make([]node, nodes)
	for n := range ns {
		ns[n].id = fmt.Sprintf("node-%02d", n)
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ns[n].key = key
		gpu := fmt.Sprintf("GPU-20000000-0000-4000-8000-%012d", n)
		// Registered through the CLI on the same database (--db URL).
		var out, errb bytes.Buffer
		if code := run(ctx, []string{"node", "register", "--db", dsn, "--id", ns[n].id, "--provider", "example-cloud",
			"--model", "H100-SXM5-80GB", "--since", base.Add(-time.Hour).Format(time.RFC3339),
			"--public-key", signing.EncodePublicKey(pub), "--gpu", gpu}, &out, &errb); code != exitOK {
			t.Fatalf("register %s: exit %d: %s", ns[n].id, code, errb.String())
		}
		sealer, err := ledger.NewSealer(ns[n].id, key, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		prev, seq := "", uint64(1)
		for b := range batches {
			recs := make([]protocol.Record, perB)
			for i := range recs {
				start := base.Add(time.Duration(b*perB+i) * time.Minute)
				r := protocol.Record{Node: ns[n].id, Provider: "example-cloud", WindowStart: start, WindowEnd: start.Add(time.Minute),
					Kind: protocol.KindUsage, Tenant: fmt.Sprintf("tenant-%d", i%3), GPUUUID: gpu, ParentUUID: gpu, Model: "NVIDIA H100 80GB HBM3",
					SliceNum: 1, SliceDen: 1, GPUMillis: 60000, UtilizationPercent: 90, EnergyMillijoules: 60000 * 400, Attribution: "cgroup"}
				r.ID = r.ComputeID()
				recs[i] = r
			}
			if b == 0 { // the node reports its inventory first, as the agent does
				inv := protocol.InventoryRecord(ns[n].id, "example-cloud", base,
					protocol.WholeGPUs(time.Minute, "NVIDIA H100 80GB HBM3", gpu))
				recs = append([]protocol.Record{inv}, recs...)
			}
			s, err := sealer.Seal(ctx, seq, prev, recs)
			if err != nil {
				t.Fatal(err)
			}
			ns[n].chain = append(ns[n].chain, s)
			prev, seq = s.Hash, s.LastSeq+1
		}
	}

	faces := setUpBilling(t, dsn, base)

	procs := []*authorityProc{startAuthority(t, cfgFile("a.yaml")), startAuthority(t, cfgFile("b.yaml"))}
	client := &http.Client{Timeout: 60 * time.Second}
	defer client.CloseIdleConnections()

	var (
		mu      sync.Mutex
		stored  = map[string]int{} // node/first_seq -> answers that stored it
		answers int
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for n := range ns {
		for j := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for b, s := range ns[n].chain {
					p := procs[(n+j+b)%2]
					a, err := call(client, http.MethodPost, p.url+"/v1/batches", s.Envelope)
					switch {
					case err != nil:
						t.Errorf("%s batch %d to %s: %v", ns[n].id, b, p.url, err)
						return
					case a.status != http.StatusOK || a.Head < s.LastSeq:
						// A sender posts a batch only after its previous one
						// was answered 200, so every answer must be 200.
						t.Errorf("%s batch %d to %s: %d %s %s (head %d)", ns[n].id, b, p.url, a.status, a.Type, a.Detail, a.Head)
						return
					}
					mu.Lock()
					answers++
					if !a.Duplicate {
						stored[fmt.Sprintf("%s/%d", ns[n].id, s.FirstSeq)]++
					}
					mu.Unlock()
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.Logf("authority a:\n%s\nauthority b:\n%s", procs[0].logTail(), procs[1].logTail())
		return
	}
	if answers != nodes*senders*batches {
		t.Fatalf("%d answers, want %d", answers, nodes*senders*batches)
	}

	// Each batch stored by exactly one answer; both processes report each
	// node's head at its chain's end.
	for _, n := range ns {
		for _, s := range n.chain {
			if k := fmt.Sprintf("%s/%d", n.id, s.FirstSeq); stored[k] != 1 {
				t.Errorf("batch %s stored by %d answers, want 1", k, stored[k])
			}
		}
		last := n.chain[batches-1]
		for _, p := range procs {
			h, err := signedHead(client, p.url, n.id, n.key)
			if err != nil || h.status != http.StatusOK || h.Head != last.LastSeq || h.HeadHash != last.Hash {
				t.Errorf("%s head from %s: %+v, %v; want %d %s", n.id, p.url, h, err, last.LastSeq, last.Hash)
			}
		}
	}

	// The processes' counters add up to the work done once.
	var storedBatches, dupBatches, records, rejected, internal float64
	for _, p := range procs {
		storedBatches += metric(t, client, p.url, `gpumeter_authority_batches_accepted_total{result="stored"}`)
		dupBatches += metric(t, client, p.url, `gpumeter_authority_batches_accepted_total{result="duplicate"}`)
		records += metric(t, client, p.url, "gpumeter_authority_records_stored_total")
		internal += metric(t, client, p.url, "gpumeter_authority_internal_errors_total")
		// Every cause a racing sender could draw: a duplicate misjudged
		// as a conflict shows up as one of these (second-signer for a
		// batch at a held sequence with other content).
		for _, cause := range []string{protocol.Fork, protocol.SequenceGap, protocol.ChainBroken, protocol.SecondSigner, protocol.OverWallTime, protocol.InvalidRecord} {
			rejected += metric(t, client, p.url, `gpumeter_authority_batches_rejected_total{cause="`+cause+`"}`)
		}
	}
	// Each chain holds its node's inventory record besides the usage.
	const perNode = batches*perB + 1
	if storedBatches != nodes*batches || dupBatches != nodes*batches*(senders-1) || records != nodes*perNode || rejected != 0 || internal != 0 {
		t.Errorf("metrics: %v batches stored, %v duplicates, %v records, %v rejected, %v internal errors; want %d, %d, %d, 0, 0",
			storedBatches, dupBatches, records, rejected, internal, nodes*batches, nodes*batches*(senders-1), nodes*perNode)
	}
	for _, p := range procs {
		p.stop(t)
	}

	// The database itself: each node's batches form one unbroken chain of
	// the sealed hashes, and each record is there once, at its seq.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, n := range ns {
		rows, err := db.QueryContext(ctx, `SELECT first_seq, last_seq, hash FROM batches WHERE node_id = $1 ORDER BY first_seq`, n.id)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var first, last uint64
			var hash string
			if err := rows.Scan(&first, &last, &hash); err != nil {
				t.Fatal(err)
			}
			if i >= batches || first != n.chain[i].FirstSeq || last != n.chain[i].LastSeq || hash != n.chain[i].Hash {
				t.Errorf("%s stored batch %d: [%d, %d] %s; want the sealed chain's", n.id, i, first, last, hash)
			}
			i++
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			t.Fatal(err)
		}
		if i != batches {
			t.Errorf("%s: %d batches stored, want %d", n.id, i, batches)
		}
		var count, distinct, minSeq, maxSeq int64
		err = db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM records WHERE node_id = $1`, n.id).
			Scan(&count, &distinct, &minSeq, &maxSeq)
		if err != nil || count != perNode || distinct != count || minSeq != 1 || maxSeq != perNode {
			t.Errorf("%s records: %d (%d distinct seqs, %d..%d), %v; want %d, seqs 1..%d", n.id, count, distinct, minSeq, maxSeq, err, perNode, perNode)
		}
	}
	var overfull int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM unit_windows WHERE total_ms > window_end_ms - window_start_ms`).Scan(&overfull); err != nil || overfull != 0 {
		t.Errorf("%d unit windows over wall time, %v", overfull, err)
	}
	checkBilling(t, db, nodes*batches*perB, faces)
}

// The billing side of the two-process test: tenant-0 and tenant-1 are
// entity E1's, tenant-2 is nobody's. One H100 minute costs 60 fen
// (3600 fen an hour) and the program pays half, 30 fen, so E1's usage
// (two thirds of the records) wants far more than its two small vouchers
// hold: they run out in the middle of the race.
const (
	billProvider = "example-cloud"
	billModel    = "NVIDIA H100 80GB HBM3"
	minuteCost   = 60 // fen
)

// setUpBilling adds the entity, tenants, rate card, program and vouchers,
// and returns the vouchers' face values.
func setUpBilling(t *testing.T, dsn string, base time.Time) map[string]billing.Fen {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.DriverPostgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	from := base.Add(-24 * time.Hour)
	faces := map[string]billing.Fen{"v-soon": 1_000, "v-later": 2_000}
	steps := []error{
		st.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme"}),
		st.MapTenant(ctx, billProvider, "tenant-0", "E1"),
		st.MapTenant(ctx, billProvider, "tenant-1", "E1"),
		st.AddRateCard(ctx, billing.RateCard{ID: "h100", Provider: billProvider, Model: billModel, PricePerHour: 60 * minuteCost, ValidFrom: from}),
		st.AddProgram(ctx, billing.Program{ID: "P1", Issuer: "city", Name: "compute vouchers", Ratio: 5000, CapPerYear: 100_000_000,
			Providers: []string{billProvider}, ValidFrom: from, ValidTo: from.AddDate(2, 0, 0),
			Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}),
		st.IssueVoucher(ctx, billing.Voucher{ID: "v-soon", Program: "P1", Holder: "E1", Face: faces["v-soon"], Issued: from, Expires: from.AddDate(0, 6, 0)}),
		st.IssueVoucher(ctx, billing.Voucher{ID: "v-later", Program: "P1", Holder: "E1", Face: faces["v-later"], Issued: from, Expires: from.AddDate(1, 0, 0)}),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("billing setup step %d: %v", i, err)
		}
	}
	return faces
}

// checkBilling: every usage record was priced once and subsidized at most
// once, no voucher paid more than its face value or went below zero, and
// the vouchers, which E1's usage outruns, are spent exactly.
func checkBilling(t *testing.T, db *sql.DB, usageRecords int, faces map[string]billing.Fen) {
	t.Helper()
	ctx := context.Background()
	var charges, distinct, unpriced, overRatio int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT record_id),
		COUNT(*) FILTER (WHERE cost_fen <> $1), COUNT(*) FILTER (WHERE 2 * subsidy_fen > cost_fen) FROM charges`, minuteCost).
		Scan(&charges, &distinct, &unpriced, &overRatio)
	if err != nil || charges != usageRecords || distinct != charges || unpriced != 0 || overRatio != 0 {
		t.Errorf("charges: %d rows for %d distinct records, %d not priced at %d fen, %d over the ratio, %v; want one per usage record (%d)",
			charges, distinct, unpriced, minuteCost, overRatio, err, usageRecords)
	}
	// What a record's charge says it got is what its grants paid: a record
	// is never subsidized by two ingests.
	var mismatched, granted int
	err = db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM charges c WHERE c.subsidy_fen <> COALESCE((SELECT SUM(g.amount_fen) FROM grants g WHERE g.record_id = c.record_id), 0)),
		(SELECT COUNT(DISTINCT record_id) FROM grants)`).Scan(&mismatched, &granted)
	if err != nil || mismatched != 0 || granted == 0 {
		t.Errorf("%d charges whose subsidy is not their grants' sum, %d records granted, %v", mismatched, granted, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT v.id, v.face_fen, v.balance_fen, COALESCE(SUM(g.amount_fen), 0)
		FROM vouchers v LEFT JOIN grants g ON g.voucher_id = v.id GROUP BY v.id, v.face_fen, v.balance_fen ORDER BY v.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var (
			id                   string
			face, balance, spent int64
		)
		if err := rows.Scan(&id, &face, &balance, &spent); err != nil {
			t.Fatal(err)
		}
		seen++
		// E1 wants more than both vouchers hold: each is spent to 0.
		if face != int64(faces[id]) || balance != 0 || spent != face {
			t.Errorf("voucher %s: face %d, balance %d, granted %d; want face %d granted in full, balance 0", id, face, balance, spent, faces[id])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(faces) {
		t.Errorf("%d vouchers, want %d", seen, len(faces))
	}
}

// splitPassword takes the password out of a PostgreSQL DSN into a 0600 file
// in dir, as the config requires, and answers the DSN without it, the file
// and whether the DSN had a password.
func splitPassword(t *testing.T, dir, dsn string) (bare, pwFile string, hasPw bool) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	u.User = url.User(u.User.Username())
	pwFile = filepath.Join(dir, "db-password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return u.String(), pwFile, pw != ""
}
