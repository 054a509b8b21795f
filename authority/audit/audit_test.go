package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to tamper with PostgreSQL

	"github.com/gpumeter/gpumeter/authority/audit"
	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// t0 is the authority's virtual now; the usage is the hour before it.
var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

const (
	node     = "node-01"
	provider = "example-cloud"
	gpuA     = "GPU-aaaaaaaa-0000-0000-0000-000000000001"
	gpuB     = "GPU-aaaaaaaa-0000-0000-0000-000000000002"
	origin   = "authority.example/log"
)

// books is an authority keeping a log, with a tenant mapped to entity E1,
// a card, a program and a voucher, and three batches ingested through the
// real pipeline: six usage records, each subsidized.
type books struct {
	*authoritytest.Authority
	t      *testing.T
	driver string
	signer *tlog.Signer
	vkey   *tlog.Verifier
	recs   []protocol.Record
	// notes are the checkpoints the ingest answered with, as agents keep them.
	notes [][]byte
}

func newBooks(t *testing.T, driver string) *books {
	t.Helper()
	ctx := context.Background()
	_, lk, _ := ed25519.GenerateKey(rand.Reader)
	sg, err := tlog.NewSigner(origin, lk)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tlog.NewVerifier(sg.VerifierKey())
	_, nk, _ := ed25519.GenerateKey(rand.Reader)
	clk := clock.NewVirtual(t0)
	b := &books{t: t, driver: driver, signer: sg, vkey: v}
	b.Authority = authoritytest.New(t, authoritytest.Options{Driver: driver, Clock: clk, LogSigner: sg,
		Nodes: []authoritytest.Node{{ID: node, Provider: provider, PublicKey: nk.Public().(ed25519.PublicKey), GPUs: []string{gpuA, gpuB}}}})
	st := b.Store
	y2026 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, err := range []error{
		st.PutEntity(ctx, billing.Entity{ID: "E1", Name: "Acme"}),
		st.MapTenant(ctx, provider, "acme", "E1"),
		st.AddRateCard(ctx, billing.RateCard{ID: "h100", Provider: provider, Model: authoritytest.DefaultModel, PricePerHour: 1000, ValidFrom: y2026}),
		st.AddProgram(ctx, billing.Program{ID: "P1", Issuer: "city", Name: "P1", Ratio: 2000, CapPerYear: 1_000_000,
			Providers: []string{provider}, ValidFrom: y2026, ValidTo: y2026.AddDate(2, 0, 0), Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}),
		st.IssueVoucherAt(ctx, billing.Voucher{ID: "v1", Program: "P1", Holder: "E1", Face: 100_000, Issued: y2026, Expires: y2026.AddDate(2, 0, 0)}, t0),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	sealer, err := ledger.NewSealer(node, nk, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	first, prev := uint64(1), ""
	for m := 0; m < 3; m++ {
		var recs []protocol.Record
		for _, g := range []string{gpuA, gpuB} {
			start := t0.Add(time.Duration(m-3) * time.Minute)
			r := protocol.Record{Node: node, Provider: provider, WindowStart: start, WindowEnd: start.Add(time.Minute),
				Kind: protocol.KindUsage, Tenant: "acme", Attribution: "cgroup", GPUUUID: g, ParentUUID: g,
				Model: "NVIDIA H100 80GB HBM3", SliceNum: 1, SliceDen: 1, GPUMillis: 60_000, UtilizationPercent: -1, EnergyMillijoules: -1}
			r.ID = r.ComputeID()
			recs = append(recs, r)
		}
		s, err := sealer.Seal(ctx, first, prev, recs)
		if err != nil {
			t.Fatal(err)
		}
		out, err := b.Ingester.Ingest(ctx, s.Envelope)
		if err != nil || out.LogIndex == nil {
			t.Fatalf("ingest batch %d: %+v, %v", first, out, err)
		}
		_, note, err := st.LogCheckpoint(ctx, sg)
		if err != nil {
			t.Fatal(err)
		}
		b.notes = append(b.notes, note)
		first, prev = s.LastSeq+1, s.Hash
		b.recs = append(b.recs, recs...)
	}
	return b
}

// exec tampers with the database directly, as an operator with write
// access could.
func (b *books) exec(q string, args ...any) {
	b.t.Helper()
	var (
		db  *sql.DB
		err error
	)
	if b.driver == store.DriverPostgres {
		db, err = sql.Open("pgx", b.DSN)
	} else {
		db, err = sql.Open("sqlite", "file:"+b.DBPath+"?_pragma=busy_timeout(10000)")
		q = strings.NewReplacer("$1", "?", "$2", "?", "$3", "?").Replace(q)
	}
	if err != nil {
		b.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q, args...); err != nil {
		b.t.Fatalf("tamper: %s: %v", q, err)
	}
}

// audit runs the audit and returns its differences as text.
func (b *books) audit() []string {
	b.t.Helper()
	rep, err := audit.Run(context.Background(), b.Store, audit.Options{})
	if err != nil {
		b.t.Fatal(err)
	}
	out := make([]string, len(rep.Differences))
	for i, d := range rep.Differences {
		out[i] = d.String()
	}
	return out
}

// wantFound fails unless some line of got holds every one of parts.
func wantFound(t *testing.T, got []string, parts ...string) {
	t.Helper()
	for _, g := range got {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(g, p)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no difference names %q; got:\n%s", parts, strings.Join(got, "\n"))
}

func TestAuditCleanBooks(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		b := newBooks(t, driver)
		rep, err := audit.Run(context.Background(), b.Store, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Clean() || rep.Batches != 3 || rep.Records != 6 || rep.Checkpoints < 4 {
			t.Fatalf("clean books: %+v", rep)
		}
	})
}

// TestTampering: each edit an operator with write access could make is
// found and named by the audit.
func TestTampering(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		cases := []struct {
			name   string
			tamper func(b *books)
			want   []string
		}{
			{"usage row edited", func(b *books) {
				b.exec(`UPDATE records SET gpu_ms = 30000 WHERE record_id = $1`, b.recs[0].ID)
			}, []string{"records [record_id=", "gpu_ms: stored 30000, recomputed 60000"}},
			{"charge deleted", func(b *books) {
				b.exec(`DELETE FROM grants WHERE record_id = $1`, b.recs[1].ID)
				b.exec(`DELETE FROM charges WHERE record_id = $1`, b.recs[1].ID)
			}, []string{"charges [record_id=", "row: stored absent"}},
			{"voucher balance raised", func(b *books) {
				b.exec(`UPDATE vouchers SET balance_fen = 100000 WHERE id = $1`, "v1")
			}, []string{"vouchers [id=v1] balance_fen: stored 100000, recomputed 99"}},
			{"record inserted without an envelope", func(b *books) {
				b.exec(`INSERT INTO records SELECT 'forged-record', node_id, 999, batch_first_seq, provider, tenant, kind, gpu_uuid, parent_uuid, model,
					mig_profile, slice_num, slice_den, window_start_ms, window_end_ms, gpu_ms, utilization_pct, energy_mj, attribution,
					shared_with, split_rule, gap_reason FROM records WHERE record_id = $1`, b.recs[0].ID)
			}, []string{"records [record_id=forged-record] row: stored present, recomputed absent: in no stored envelope"}},
			{"leaves reordered", func(b *books) {
				// Swap the two charge leaves of the first batch (leaf 0 is
				// the voucher's issue, 1 the batch), data and hash alike.
				b.exec(`UPDATE log_leaves SET idx = -1 WHERE idx = 2`)
				b.exec(`UPDATE log_leaves SET idx = 2 WHERE idx = 3`)
				b.exec(`UPDATE log_leaves SET idx = 3 WHERE idx = -1`)
			}, []string{"log_checkpoints [size=", "note (root)"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				b := newBooks(t, driver)
				c.tamper(b)
				got := b.audit()
				wantFound(t, got, c.want...)
			})
		}
	})
}

// exportStatement is E1's statement over the usage's day, with proofs
// and consistency proofs from the sizes of from.
func (b *books) exportStatement(from ...uint64) *audit.File {
	b.t.Helper()
	ctx := context.Background()
	s, err := b.Store.Statement(ctx, "E1", t0.Add(-24*time.Hour), t0)
	if err != nil || len(s.Lines) != 6 {
		b.t.Fatalf("statement: %d lines, %v", len(s.Lines), err)
	}
	f := &audit.File{Statement: &s}
	if err := audit.Export(ctx, b.Store, f, from); err != nil {
		b.t.Fatal(err)
	}
	return f
}

func sizeOf(t *testing.T, v *tlog.Verifier, note []byte) uint64 {
	t.Helper()
	cp, err := v.Open(note)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// TestVerifyProofFile: a tenant checks its statement offline; an edited
// amount and a split view (a forged root signed with the log's key, as
// a corrupt operator could, served to a second agent) are named.
func TestVerifyProofFile(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		b := newBooks(t, driver)
		first := b.notes[0]
		f := b.exportStatement(sizeOf(t, b.vkey, first))
		agentA := audit.Other{Name: "agent-a", Note: first}
		if fails := audit.Verify(f, b.vkey, []audit.Other{agentA}); len(fails) != 0 {
			t.Fatalf("honest file: %q", fails)
		}

		// Split view: the operator signs a second root for agent-a's size.
		forged, err := b.signer.Sign(sizeOf(t, b.vkey, first), make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		fails := audit.Verify(f, b.vkey, []audit.Other{agentA, {Name: "agent-b", Note: forged}})
		if len(fails) != 1 || !audit.IsSplitView(fails[0]) || !strings.Contains(fails[0], "agent-b") || !strings.Contains(fails[0], "agent-a") {
			t.Fatalf("split view: %q", fails)
		}

		// A line's subsidy raised in the file: its leaves disagree.
		f.Statement.Lines[2].Grants[0].Amount += 100
		f.Statement.Lines[2].Subsidy += 100
		fails = audit.Verify(f, b.vkey, nil)
		if len(fails) == 0 || !strings.Contains(strings.Join(fails, "\n"), "line "+f.Statement.Lines[2].RecordID+": voucher v1 paid") {
			t.Fatalf("edited amount: %q", fails)
		}

		// A checkpoint not signed by the log's key.
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		osg, _ := tlog.NewSigner(origin, other)
		note, _ := osg.Sign(1, make([]byte, 32))
		g := b.exportStatement()
		g.Checkpoint = string(note)
		if fails := audit.Verify(g, b.vkey, nil); len(fails) != 1 || !strings.Contains(fails[0], "checkpoint: checkpoint not signed") {
			t.Fatalf("foreign checkpoint: %q", fails)
		}
	})
}

// TestAuditForgedCheckpoint: the operator replaces a kept checkpoint by
// a forged one signed with the log's key; the audit names it.
func TestAuditForgedCheckpoint(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		b := newBooks(t, driver)
		size := sizeOf(t, b.vkey, b.notes[0])
		forged, err := b.signer.Sign(size, make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		b.exec(`UPDATE log_checkpoints SET note = $1 WHERE size = $2`, forged, int64(size))
		wantFound(t, b.audit(), "log_checkpoints [size=", "note (root): stored 0000")
	})
}
