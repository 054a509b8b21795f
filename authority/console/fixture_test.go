package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the raw fixture's PostgreSQL driver

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testenv"
)

// HTML that must reach pages only escaped: in an entity's and a
// program's name, a tenant label nodes send, and a review's reason.
const (
	evilName   = `Acme <script>alert("name")</script> & Co`
	evilTenant = `<img src=x onerror=alert(1)>`
	evilReason = `<b onmouseover=alert(2)>idle</b>`
)

// demo is what the fixture wrote, for the tests to look for.
type demo struct {
	st         *store.Store
	db         *sql.DB // raw, for the bulk rows
	driver     string
	source     string // the SQLite file or the PostgreSQL URL
	held       []string
	start, end time.Time
	step       time.Duration // between two records of a node
}

// openDemo opens a fresh store of driver, with demo-like billing set-up
// through the store's own API (what the CLI and admin API call), and
// records per node as usage ingest would bill them, written in bulk, one
// every span/recordsPerNode up to now. With live, node-b1's batch was just
// received (the overview sums it from the records); else it is as old as
// node-a1's, which the overview's rollup folds.
func openDemo(t testing.TB, driver string, recordsPerNode int, span time.Duration, now time.Time, live bool) *demo {
	t.Helper()
	ctx := context.Background()
	d := &demo{driver: driver}
	rawDriver := "sqlite"
	switch driver {
	case store.DriverPostgres:
		d.source, rawDriver = testenv.PostgresDSN(t), "pgx"
	default:
		d.source = filepath.Join(t.TempDir(), "authority.db")
	}
	st, err := store.Open(ctx, driver, d.source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d.st = st
	raw := d.source
	if driver != store.DriverPostgres {
		raw = "file:" + d.source + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	}
	if d.db, err = sql.Open(rawDriver, raw); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.db.Close() })

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.PutEntity(ctx, billing.Entity{ID: "acme", Name: evilName}))
	must(st.PutEntity(ctx, billing.Entity{ID: "globex", Name: "Globex AI"}))
	must(st.MapTenant(ctx, "cloud-a", "acme-t", "acme"))
	must(st.MapTenant(ctx, "cloud-b", "globex-t", "globex"))
	year := time.Date(now.Year()-1, 1, 1, 0, 0, 0, 0, time.UTC)
	must(st.AddProgram(ctx, billing.Program{ID: "p1", Issuer: "Bureau <i>of</i> Industry", Name: "Program <b>one</b>",
		Ratio: 5000, CapPerYear: 100_000_000, Providers: []string{"cloud-a", "cloud-b"},
		ValidFrom: year, ValidTo: year.AddDate(3, 0, 0), Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}))
	must(st.IssueVoucherAt(ctx, billing.Voucher{ID: "v-acme", Program: "p1", Holder: "acme", Face: 2_000_000_000,
		Issued: year, Expires: now.AddDate(0, 0, 20), Status: billing.VoucherActive}, year))
	must(st.IssueVoucherAt(ctx, billing.Voucher{ID: "v-globex", Program: "p1", Holder: "globex", Face: 2_000_000_000,
		Issued: year, Expires: now.AddDate(1, 0, 0), Status: billing.VoucherActive}, year))
	d.end = now.Truncate(time.Hour)
	d.start = d.end.Add(-span)
	d.step = span / time.Duration(recordsPerNode)
	for i, n := range []struct{ node, provider, tenant, entity, voucher string }{
		{"node-a1", "cloud-a", "acme-t", "acme", "v-acme"},
		{"node-b1", "cloud-b", "globex-t", "globex", "v-globex"},
	} {
		gpu := fmt.Sprintf("GPU-c0c0c0c0-0000-4000-8000-%012d", i)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		must(st.RegisterNode(ctx, store.Registration{ID: n.node, Provider: n.provider, Key: pub,
			GPUs: store.GPUsOf("H100-SXM5-80GB", gpu), Since: year}, year))
		received := d.start
		if i == 1 && live {
			received = now
		}
		d.bulk(t, n.node, n.provider, n.tenant, n.entity, n.voucher, gpu, recordsPerNode, received)
	}
	// Two of node-a1's records wait for review, one with an HTML reason.
	d.held = []string{"node-a1-1", "node-a1-2"}
	for i, id := range d.held {
		reason := "energy"
		if i == 0 {
			reason = evilReason
		}
		d.exec(t, `UPDATE charges SET review = 'held' WHERE record_id = ?`, id)
		d.exec(t, `INSERT INTO reviews (record_id, node_id, provider, tenant, entity_id, window_start_ms, reason, held_fen, status, created)
			SELECT c.record_id, 'node-a1', c.provider, c.tenant, c.entity_id, c.window_start_ms, ?, c.subsidy_fen, 'held', ?
			FROM charges c WHERE c.record_id = ?`, reason, now.UnixMilli(), id)
	}
	d.exec(t, `UPDATE vouchers SET balance_fen = face_fen - (SELECT COALESCE(SUM(amount_fen), 0) FROM grants g WHERE g.voucher_id = vouchers.id)`)
	return d
}

func (d *demo) rebind(q string) string {
	if d.driver != store.DriverPostgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (d *demo) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := d.db.Exec(d.rebind(q), args...); err != nil {
		t.Fatalf("%.60s: %v", q, err)
	}
}

// bulk writes n hourly usage records of one node ending at d.end, each
// costing 25 yuan with half subsidized by voucher, in one batch row and
// multi-row INSERTs of 500 rows: as ingest would have stored and billed them.
func (d *demo) bulk(t testing.TB, node, provider, tenant, entity, voucher, gpu string, n int, received time.Time) {
	t.Helper()
	var keyID string
	if err := d.db.QueryRow(d.rebind(`SELECT key_id FROM node_keys WHERE node_id = ?`), node).Scan(&keyID); err != nil {
		t.Fatal(err)
	}
	d.exec(t, `INSERT INTO batches (node_id, first_seq, last_seq, hash, key_id, received_at, envelope) VALUES (?, 1, ?, 'h', ?, ?, ?)`,
		node, n, keyID, received.UnixMilli(), []byte("{}"))
	tx, err := d.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 500
	granted := map[int]int64{} // by year (China Standard Time), for the yearly cap's counter
	for seq := 1; seq <= n; seq++ {
		granted[billing.Year(d.start.Add(time.Duration(seq-1)*d.step))] += 1250
	}
	for y, g := range granted {
		if _, err := tx.Exec(d.rebind(`INSERT INTO subsidy_carries (program_id, entity_id, year, remainder, granted_fen) VALUES ('p1', ?, ?, 0, ?)`),
			entity, y, g); err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
	}
	for lo := 1; lo <= n; lo += chunk {
		hi := min(lo+chunk-1, n)
		var recs, charges, grants strings.Builder
		var ra, ca, ga []any
		for seq := lo; seq <= hi; seq++ {
			id := fmt.Sprintf("%s-%d", node, seq)
			ws := d.start.Add(time.Duration(seq-1) * d.step).UnixMilli()
			tn := tenant
			if seq == 3 {
				tn = evilTenant
			}
			sep := ","
			if seq == lo {
				sep = ""
			}
			recs.WriteString(sep + "(?,?,?,1,?,?,'usage',?,'','H100-SXM5-80GB','',1,1,?,?,3600000,90,1000,'exclusive',0,'','')")
			ra = append(ra, id, node, seq, provider, tn, gpu, ws, ws+3_600_000)
			charges.WriteString(sep + "(?,?,?,?,?,'',2500,1250,'p1','subsidized')")
			ca = append(ca, id, provider, tn, entity, ws)
			grants.WriteString(sep + "(?,?,1250)")
			ga = append(ga, id, voucher)
		}
		for _, s := range []struct {
			head string
			b    *strings.Builder
			args []any
		}{
			{`INSERT INTO records (record_id, node_id, seq, batch_first_seq, provider, tenant, kind, gpu_uuid, parent_uuid, model,
				mig_profile, slice_num, slice_den, window_start_ms, window_end_ms, gpu_ms, utilization_pct, energy_mj, attribution,
				shared_with, split_rule, gap_reason) VALUES `, &recs, ra},
			{`INSERT INTO charges (record_id, provider, tenant, entity_id, window_start_ms, rate_card_id, cost_fen, subsidy_fen,
				program_id, note) VALUES `, &charges, ca},
			{`INSERT INTO grants (record_id, voucher_id, amount_fen) VALUES `, &grants, ga},
		} {
			if _, err := tx.Exec(d.rebind(s.head+s.b.String()), s.args...); err != nil {
				_ = tx.Rollback()
				t.Fatalf("bulk insert: %v", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	d.exec(t, `UPDATE nodes SET head_seq = ?, last_window_end_ms = ? WHERE id = ?`, n, d.end.UnixMilli(), node)
}
