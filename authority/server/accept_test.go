package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/metering/ledger"
)

func TestAcceptAdvancesHead(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		if h := e.get("/v1/nodes/" + node1 + "/head"); h.status != 200 || h.Head != 0 || h.HeadHash != "" {
			t.Fatalf("empty head: %d %+v", h.status, h)
		}
		b1 := e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000), rec(gpuB, 3, "", 60000))
		e.mustAccept(b1)
		b2 := e.seal(e.sealer, 3, b1.Hash, rec(gpuA, 2, "t1", 30000), rec(gpuA, 2, "t2", 20000), rec(gpuA, 2, "", 10000))
		e.mustAccept(b2)
		h := e.get("/v1/nodes/" + node1 + "/head")
		if h.Head != 5 || h.HeadHash != b2.Hash || h.Node != node1 {
			t.Fatalf("head = %+v, want 5 %s", h, b2.Hash)
		}
		if c := e.Counts(t); c.Batches != 2 || c.Records != 5 || c.UnitWindows != 3 {
			t.Errorf("counts = %+v, want 2 batches, 5 records, 3 unit windows", c)
		}
		if m := e.metrics(); !strings.Contains(m, "gpumeter_authority_records_stored_total 5") {
			t.Errorf("records metric missing or wrong")
		}
	})
}

func TestHeadOfUnknownNode(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		a := e.get("/v1/nodes/nobody/head")
		if a.status != http.StatusNotFound || a.Type != problemType("not-found") {
			t.Fatalf("got %d %+v", a.status, a)
		}
	})
}

func TestExactResendIsDuplicate(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		b1 := e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000))
		b2 := e.seal(e.sealer, 2, b1.Hash, rec(gpuA, 2, "t1", 60000))
		e.mustAccept(b1)
		e.mustAccept(b2)
		before := e.Counts(t)
		for _, s := range []ledger.Sealed{b1, b2} {
			a := e.post(s.Envelope)
			if a.status != 200 || !a.Duplicate || a.Head != 2 {
				t.Errorf("resend of %d: %d %+v, want 200 duplicate head 2", s.FirstSeq, a.status, a)
			}
		}
		if after := e.Counts(t); after != before {
			t.Errorf("resend stored rows: %+v -> %+v", before, after)
		}
	})
}

// TestSecondSignerFlagsNode: a copy of the node signing at a stored seq is
// refused (fork, to an agent that sends no instance id), flags the node,
// and the original's chain goes on; problems carry the authority's time,
// the head its last window end.
func TestSecondSignerFlagsNode(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		b1 := e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000))
		e.mustAccept(b1)
		a := e.post(e.seal(e.sealer, 1, "", rec(gpuA, 3, "t9", 60000)).Envelope)
		if a.status != http.StatusConflict || a.Type != problemType("fork") || a.Hold || a.AuthorityTime == nil ||
			!strings.Contains(a.Detail, "second copy") {
			t.Fatalf("second signer: %d %+v", a.status, a)
		}
		// The original's next batch is accepted while the node is flagged.
		b2 := e.seal(e.sealer, 2, b1.Hash, rec(gpuA, 2, "t1", 60000))
		e.mustAccept(b2)
		n, err := e.Store.Node(context.Background(), node1)
		if err != nil || !n.Forked || n.HeadSeq != 2 {
			t.Fatalf("node = %+v, %v; want flagged, head 2", n, err)
		}
		if m := e.metrics(); !strings.Contains(m, "gpumeter_authority_forks_flagged_total 1") {
			t.Errorf("forks metric wrong")
		}
		h := e.get("/v1/nodes/" + node1 + "/head")
		if h.status != 200 || h.LastWindowEnd == nil || !h.LastWindowEnd.Equal(n.LastWindowEnd) || n.LastWindowEnd.IsZero() {
			t.Errorf("head %+v, node's last window end %s", h, n.LastWindowEnd)
		}
		if nf := e.get("/v1/nodes/nobody/head"); nf.AuthorityTime == nil {
			t.Errorf("not-found without the authority's time: %+v", nf)
		}
	})
}

func TestKeyRotation(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		ctx := context.Background()
		k2 := newKey(t)
		// Active from an hour back: the operator rotated a node whose
		// unsent windows began before the rotation.
		if _, err := e.Store.AddKey(ctx, node1, pub(k2), t0.Add(-time.Hour), t0); err != nil {
			t.Fatal(err)
		}
		b1 := e.seal(e.newSealer(node1, k2), 1, "", rec(gpuA, 4, "t1", 60000))
		e.mustAccept(b1)
		// The old key is valid until revoked: sequences continue across keys.
		b2 := e.seal(e.sealer, 2, b1.Hash, rec(gpuA, 3, "t1", 60000))
		e.mustAccept(b2)
		if err := e.Store.RevokeKey(ctx, e.sealer.KeyID(), t0); err != nil {
			t.Fatal(err)
		}
		a := e.post(e.seal(e.sealer, 3, b2.Hash, rec(gpuA, 2, "t1", 60000)).Envelope)
		if a.Type != problemType("revoked-key") {
			t.Fatalf("old key after revocation: %+v", a)
		}
		e.mustAccept(e.seal(e.newSealer(node1, k2), 3, b2.Hash, rec(gpuA, 2, "t1", 60000)))
	})
}

func TestConcurrentIngestStoresOnce(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		s := e.seal(e.sealer, 1, "", rec(gpuA, 3, "t1", 60000), rec(gpuB, 3, "t2", 60000))
		const n = 8
		answers := make([]answer, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				answers[i] = e.post(s.Envelope)
			}()
		}
		close(start)
		wg.Wait()
		stored := 0
		for i, a := range answers {
			if a.status != 200 || a.Head != 2 {
				t.Errorf("request %d: %d %+v", i, a.status, a)
			}
			if !a.Duplicate {
				stored++
			}
		}
		if stored != 1 {
			t.Errorf("%d requests stored the batch, want 1", stored)
		}
		if c := e.Counts(t); c.Batches != 1 || c.Records != 2 {
			t.Errorf("counts = %+v, want 1 batch, 2 records", c)
		}
	})
}

func TestUsageSumsPerTenant(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		b1 := e.seal(e.sealer, 1, "",
			rec(gpuA, 3, "t1", 45000), rec(gpuA, 3, "t2", 15000),
			rec(gpuB, 3, "t1", 60000),
			rec(gpuA, 2, "t1", 20000), rec(gpuA, 2, "", 40000), // idle is never usage
		)
		e.mustAccept(b1)
		from := t0.Add(-10 * time.Minute).Format(time.RFC3339)
		to := t0.Format(time.RFC3339)
		tests := []struct {
			name  string
			query string
			want  []store.UsageRow
			total int64
		}{
			{"all tenants", "from=" + from + "&to=" + to,
				[]store.UsageRow{{Tenant: "t1", Node: node1, GPUMs: 125000, Records: 3}, {Tenant: "t2", Node: node1, GPUMs: 15000, Records: 1}}, 140000},
			{"one tenant", "tenant=t2&node=" + node1 + "&from=" + from + "&to=" + to,
				[]store.UsageRow{{Tenant: "t2", Node: node1, GPUMs: 15000, Records: 1}}, 15000},
			{"other node", "node=" + node2 + "&from=" + from + "&to=" + to, []store.UsageRow{}, 0},
			// Only records whose whole window lies in the period count.
			{"period cuts a window", "from=" + from + "&to=" + t0.Add(-time.Minute-time.Second).Format(time.RFC3339),
				[]store.UsageRow{{Tenant: "t1", Node: node1, GPUMs: 105000, Records: 2}, {Tenant: "t2", Node: node1, GPUMs: 15000, Records: 1}}, 120000},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := e.HTTP.Client().Do(e.operatorGet("/v1/usage?" + tc.query))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var rep server.UsageReport
				if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
					t.Fatalf("status %d, decode: %v", resp.StatusCode, err)
				}
				if rep.TotalGPUMs != tc.total || len(rep.Rows) != len(tc.want) {
					t.Fatalf("report = %+v, want rows %+v total %d", rep, tc.want, tc.total)
				}
				for i := range tc.want {
					if rep.Rows[i] != tc.want[i] {
						t.Errorf("row %d = %+v, want %+v", i, rep.Rows[i], tc.want[i])
					}
				}
			})
		}
	})
}

func TestUsageBadPeriod(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		for _, q := range []string{"", "from=yesterday&to=2026-01-01T00:00:00Z", "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"} {
			a := e.get("/v1/usage?" + q)
			if a.status != http.StatusBadRequest || a.Type != problemType("bad-request") {
				t.Errorf("query %q: %d %+v", q, a.status, a)
			}
		}
	})
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, 0)
	resp, err := e.HTTP.Client().Get(e.HTTP.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}
