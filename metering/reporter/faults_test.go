package reporter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/protocol"
)

// Fault injection between the reporter and the reference authority: a real
// toxiproxy proxy, embedded in the test process, forwards the reporter's
// TCP connections to the authority's loopback listener, and its toxics
// delay, slice, stall, cut and reset them. Every fault here is transient,
// so whatever the toxics did, the authority must end up holding every
// appended record exactly once, and the spool nothing unacknowledged and
// nothing dead-lettered.

// toxic is one toxic as toxiproxy's JSON API takes it. keep leaves it in
// place through the final Flush (it slows delivery but cannot stop it);
// the others are removed once the fault has observably bitten.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"` // "upstream": agent → authority; "downstream": the answers
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
	keep       bool
}

// faultProxy is a toxiproxy proxy on its own loopback port in front of the
// authority.
type faultProxy struct {
	t testing.TB
	p *toxiproxy.Proxy
}

func newFaultProxy(tb testing.TB, upstream string) *faultProxy {
	tb.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "authority", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		tb.Fatalf("start toxiproxy in front of %s: %v", upstream, err)
	}
	// Registered after the authority's cleanup, so it runs first: the
	// proxy's connections to the authority close before the authority
	// waits for its connections to go idle.
	tb.Cleanup(p.Stop)
	return &faultProxy{t: tb, p: p}
}

// url is the proxy's address; Start has filled in the port it listens on.
func (f *faultProxy) url() string { return "http://" + f.p.Listen }

// add installs toxics; each applies to the connections already open (from
// the next chunk on) and to every new one, where toxicity is rolled per
// connection and direction.
func (f *faultProxy) add(toxics []toxic) {
	f.t.Helper()
	for _, tx := range toxics {
		b, err := json.Marshal(tx)
		if err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.p.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
			f.t.Fatalf("add toxic %s: %v", tx.Name, err)
		}
	}
}

// removeTransient removes the toxics not marked keep.
func (f *faultProxy) removeTransient(toxics []toxic) {
	f.t.Helper()
	for _, tx := range toxics {
		if tx.keep {
			continue
		}
		if err := f.p.Toxics.RemoveToxic(context.Background(), tx.Name); err != nil {
			f.t.Fatalf("remove toxic %s: %v", tx.Name, err)
		}
	}
}

// Sizes of the fault tests: a backlog of 60 windows (1,200 records; the
// first window alone through the clean proxy, the rest in 12 batches of up
// to 100 into the faults), then two appends of 3 windows while the faults
// act. The authority's ingest under -race dominates the run time.
const (
	faultBacklogWindows = 60
	faultExtraWindows   = 3
	faultBatchRecords   = 5 * recsPerWindow
)

// faultProgress is what a case's bitten predicate sees.
type faultProgress struct {
	st reporter.Stats
	// delivered counts the records acknowledged since the toxics went in.
	delivered uint64
}

// answerBytes is about the size of the authority's answer to a POST (156
// bytes with headers, within a few bytes: the head's digits and
// "duplicate" vary). A downstream limit of 1.5 answers lets one answer
// through per connection and cuts the next one in its headers, after the
// authority stored the batch.
const answerBytes = 156

func TestFaultsBetweenAgentAndAuthority(t *testing.T) {
	tests := []struct {
		name   string
		toxics []toxic
		// bitten says the fault has acted on this run (it is waited for,
		// with a deadline, before the transient toxics are removed).
		bitten     func(p faultProgress) bool
		biteWhat   string
		duplicates bool // a lost answer after a store must come back as an idempotent duplicate
	}{
		{
			name: "latency 200ms±50ms on answers, 40ms±20ms on half the requests",
			toxics: []toxic{
				{Name: "slow-answers", Type: "latency", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"latency": 200, "jitter": 50}},
				{Name: "slow-requests", Type: "latency", Stream: "upstream", Toxicity: 0.5, Attributes: map[string]any{"latency": 40, "jitter": 20}},
			},
			bitten:   func(p faultProgress) bool { return p.delivered >= 3*faultBatchRecords },
			biteWhat: "3 batches acknowledged through the latency",
		},
		{
			name: "reset_peer on requests after 50ms: the batch never arrives",
			toxics: []toxic{
				{Name: "reset-requests", Type: "reset_peer", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"timeout": 50}},
			},
			bitten:   func(p faultProgress) bool { return p.st.FailedAttempts >= 3 },
			biteWhat: "3 failed attempts",
		},
		{
			name: "reset_peer on answers after 50ms: stored, answer lost",
			toxics: []toxic{
				{Name: "reset-answers", Type: "reset_peer", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"timeout": 50}},
			},
			bitten:     func(p faultProgress) bool { return p.st.FailedAttempts >= 3 },
			biteWhat:   "3 failed attempts",
			duplicates: true,
		},
		{
			name: "reset_peer both ways on some connections, limit_data churning connections",
			toxics: []toxic{
				{Name: "reset-requests", Type: "reset_peer", Stream: "upstream", Toxicity: 0.3, Attributes: map[string]any{"timeout": 50}},
				{Name: "reset-answers", Type: "reset_peer", Stream: "downstream", Toxicity: 0.3, Attributes: map[string]any{"timeout": 50}},
				// A connection that survives would be kept alive for ever
				// and never roll the toxicity again: cut each after about
				// two answers so every few requests meet a fresh roll.
				{Name: "churn", Type: "limit_data", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"bytes": 2*answerBytes + answerBytes/2}},
			},
			bitten:   func(p faultProgress) bool { return p.st.FailedAttempts >= 6 },
			biteWhat: "6 failed attempts",
		},
		{
			name: "timeout on answers: stalls 100ms, then closes",
			toxics: []toxic{
				{Name: "stall-answers", Type: "timeout", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"timeout": 100}},
			},
			// No duplicate is required: a close before the authority
			// commits cancels the request's context and stores nothing,
			// a close after it loses the answer. Either way the totals
			// below must be exact.
			bitten:   func(p faultProgress) bool { return p.st.FailedAttempts >= 2 },
			biteWhat: "2 failed attempts",
		},
		{
			name: "timeout on requests for ever: the reporter's own 1s timeout ends the attempt",
			toxics: []toxic{
				{Name: "stall-requests", Type: "timeout", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"timeout": 0}},
			},
			bitten:   func(p faultProgress) bool { return p.st.FailedAttempts >= 1 },
			biteWhat: "a timed-out attempt",
		},
		{
			name: "slicer: requests in ~512-byte and answers in ~16-byte slices, with delays, kept",
			toxics: []toxic{
				{Name: "slice-requests", Type: "slicer", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"average_size": 512, "size_variation": 256, "delay": 20}, keep: true},
				{Name: "slice-answers", Type: "slicer", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"average_size": 16, "size_variation": 8, "delay": 200}, keep: true},
			},
			bitten:   func(p faultProgress) bool { return p.delivered >= 6*faultBatchRecords },
			biteWhat: "6 batches acknowledged through the slicer",
		},
		{
			name: "limit_data on answers: every second answer cut after the store, kept",
			toxics: []toxic{
				{Name: "cut-answers", Type: "limit_data", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"bytes": answerBytes + answerBytes/2}, keep: true},
			},
			bitten:     func(p faultProgress) bool { return p.st.Duplicates >= 3 },
			biteWhat:   "3 idempotent duplicates",
			duplicates: true,
		},
		{
			name: "combination: latency and slicer kept; partial resets, stalls and cut answers",
			toxics: []toxic{
				{Name: "slow-answers", Type: "latency", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"latency": 30, "jitter": 20}, keep: true},
				{Name: "slice-requests", Type: "slicer", Stream: "upstream", Toxicity: 0.5, Attributes: map[string]any{"average_size": 1024, "size_variation": 512, "delay": 10}, keep: true},
				{Name: "reset-requests", Type: "reset_peer", Stream: "upstream", Toxicity: 0.2, Attributes: map[string]any{"timeout": 50}},
				{Name: "stall-answers", Type: "timeout", Stream: "downstream", Toxicity: 0.2, Attributes: map[string]any{"timeout": 100}},
				// Toxicity 1: it also churns connections, so the partial
				// toxics are rolled again every second answer.
				{Name: "cut-answers", Type: "limit_data", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"bytes": answerBytes + answerBytes/2}},
			},
			bitten:   func(p faultProgress) bool { return p.st.FailedAttempts >= 5 && p.st.Duplicates >= 1 },
			biteWhat: "5 failed attempts and a duplicate",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each case has its own authority, proxy and spool; in
			// parallel, the stalls of one overlap the ingest of another.
			t.Parallel()
			a := newAuthority(t)
			px := newFaultProxy(t, a.HTTP.Listener.Addr().String())
			g := newAgent(t, a.key)
			opts := g.options(px.url())
			opts.Timeout, opts.RetryWaitMin, opts.RetryWaitMax = time.Second, 10*time.Millisecond, 200*time.Millisecond
			opts.MaxBatchRecords, opts.MaxInFlight = faultBatchRecords, 4
			r := g.reporter(opts)
			acked := func() uint64 { h, _, _ := g.spool.Head(); return h }

			// One window through the clean proxy first, so the reporter
			// holds a live keep-alive connection when the toxics go in:
			// they act on it as well as on every new one.
			g.appendWindows(0, 1)
			if err := r.Flush(context.Background()); err != nil {
				t.Fatalf("Flush through the clean proxy: %v", err)
			}
			atFaults := acked()
			px.add(tc.toxics)
			g.appendWindows(1, faultBacklogWindows)
			windows := faultBacklogWindows
			stop := run(t, r)
			// Records appended while the faults act.
			g.appendWindows(windows, windows+faultExtraWindows)
			windows += faultExtraWindows
			r.Notify()
			eventually(t, tc.biteWhat, func() bool { return tc.bitten(faultProgress{st: r.Stats(), delivered: acked() - atFaults}) })
			g.appendWindows(windows, windows+faultExtraWindows)
			windows += faultExtraWindows
			r.Notify()
			px.removeTransient(tc.toxics)
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.Flush(ctx); err != nil {
				t.Fatalf("Flush after the faults: %v (stats %+v)", err, r.Stats())
			}

			// assertDelivered: the authority's head is the number of
			// records appended and it stores that many records; with its
			// UNIQUE (node_id, seq), every seq 1..head is stored once.
			total := windows * recsPerWindow
			assertDelivered(t, a, g, total)
			assertUsageTotals(t, a, windows)
			st := r.Stats()
			if st.DeadLetters != 0 || st.Forks != 0 || st.Blocked {
				t.Errorf("transient faults dead-lettered or blocked delivery: %+v", st)
			}
			if n, err := a.Store.Node(context.Background(), node); err != nil || n.Forked {
				t.Errorf("authority node: forked %t, err %v", n.Forked, err)
			}
			if tc.duplicates && st.Duplicates == 0 {
				t.Errorf("answers were lost after the store, but no resend was answered duplicate: %+v", st)
			}
			t.Logf("%d records in %d authority batches; reporter: %d sends answered 200, %d duplicates (idempotent resends), %d failed attempts",
				total, a.counts().Batches, st.SentBatches, st.Duplicates, st.FailedAttempts)
		})
	}
}

// assertUsageTotals checks the authority's billable totals over the whole
// period, per tenant, against the usage records of windows 0..windows-1:
// equal to the millisecond, and no tenant the agent never reported.
func assertUsageTotals(t *testing.T, a *authority, windows int) {
	t.Helper()
	wantMs, wantN := map[string]int64{}, map[string]int64{}
	for i := range windows {
		for _, rec := range window(i) {
			if rec.Kind == protocol.KindUsage {
				wantMs[rec.Tenant] += rec.GPUMillis
				wantN[rec.Tenant]++
			}
		}
	}
	rows, err := a.Store.Usage(context.Background(), store.UsageFilter{From: time.Unix(0, 0), To: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(wantMs) {
		t.Errorf("authority has usage of %d tenant/node pairs, want %d: %+v", len(rows), len(wantMs), rows)
	}
	for _, row := range rows {
		if row.Node != node || row.GPUMs != wantMs[row.Tenant] || row.Records != wantN[row.Tenant] {
			t.Errorf("authority usage %+v, want node %s, %d ms in %d records", row, node, wantMs[row.Tenant], wantN[row.Tenant])
		}
	}
}
