package ingest_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestSpoolLostGapAccepted: an agent whose spool was lost continues the
// chain from the authority's head and covers the unknown time with gap
// records of reason spool_lost. The ingester's real checks (ledger.Open,
// the record checks, the registry and layout checks in the store's
// transaction) accept them and store them as gaps, never billable, on
// every store. (A reason outside the protocol's list never gets this far:
// the sealer refuses to sign it, and ledger.Open refuses it kind-fields.)
func TestSpoolLostGapAccepted(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		ctx := context.Background()
		const gpu = "GPU-5b001000-0000-4000-8000-000000000001"
		now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
		clk := clock.NewVirtual(now)
		key := testutil.NewKey(t)
		a := authoritytest.New(t, authoritytest.Options{Driver: driver, Clock: clk, Nodes: []authoritytest.Node{
			{ID: "n1", Provider: "p", PublicKey: key.Public().(ed25519.PublicKey), GPUs: []string{gpu}},
		}})
		sealer, err := ledger.NewSealer("n1", key, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		record := func(minutesAgo int, kind protocol.Kind, tenant, reason string, ms int64) protocol.Record {
			start := now.Add(-time.Duration(minutesAgo) * time.Minute)
			r := protocol.Record{Node: "n1", Provider: "p", WindowStart: start, WindowEnd: start.Add(time.Minute),
				Kind: kind, Tenant: tenant, GapReason: reason, GPUUUID: gpu, ParentUUID: gpu, Model: "NVIDIA H100 80GB HBM3",
				SliceNum: 1, SliceDen: 1, GPUMillis: ms, UtilizationPercent: protocol.Unknown, EnergyMillijoules: protocol.Unknown}
			if kind == protocol.KindUsage {
				r.Attribution = "cgroup"
			}
			r.ID = r.ComputeID()
			return r
		}
		ingest := func(first uint64, prev string, recs ...protocol.Record) (ledger.Sealed, ingestResult) {
			t.Helper()
			b, err := sealer.Seal(ctx, first, prev, recs)
			if err != nil {
				t.Fatal(err)
			}
			out, err := a.Ingester.Ingest(ctx, b.Envelope)
			return b, ingestResult{out.Records, out.Head, err}
		}

		// Usage, then the lost spool's time as spool_lost gaps from the
		// head on.
		b1, res := ingest(1, "", record(10, protocol.KindUsage, "acme", "", 60000))
		if res.err != nil || res.head != 1 {
			t.Fatalf("usage batch: %+v", res)
		}
		_, res = ingest(2, b1.Hash,
			record(9, protocol.KindGap, "", protocol.GapSpoolLost, 0),
			record(8, protocol.KindGap, "", protocol.GapSpoolLost, 0))
		if res.err != nil || res.records != 2 || res.head != 3 {
			t.Fatalf("spool_lost gaps: %+v, want 2 records stored, head 3", res)
		}
		c, err := a.Store.Count(ctx)
		if err != nil || c.Records != 3 {
			t.Fatalf("store holds %+v, %v; want 3 records (usage and two gaps)", c, err)
		}
		// The gaps are stored as gaps: usage counts the usage minute only.
		rows, err := a.Store.Usage(ctx, store.UsageFilter{From: now.Add(-time.Hour), To: now})
		if err != nil {
			t.Fatal(err)
		}
		var ms int64
		for _, r := range rows {
			ms += r.GPUMs
		}
		if ms != 60000 {
			t.Errorf("usage %d ms, want 60000 (gaps are never usage)", ms)
		}
		if n, err := a.Store.Node(ctx, "n1"); err != nil || !n.LastWindowEnd.Equal(now.Add(-7*time.Minute)) {
			t.Errorf("node after the gaps: last window end %s, %v; want %s", n.LastWindowEnd, err, now.Add(-7*time.Minute))
		}
	})
}

type ingestResult struct {
	records int
	head    uint64
	err     error
}
