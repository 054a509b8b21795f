package reporter_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestHeldRefusalKeepsTheBatch: a held refusal (a cause this version
// knows to be held, or one it does not know that carries "hold": true)
// keeps the batch unacknowledged; it is sent again, byte for byte, about
// every RetryWaitMax, never dead-lettered, and delivered once the
// authority accepts it.
func TestHeldRefusalKeepsTheBatch(t *testing.T) {
	const perBatch = 10 * recsPerWindow
	for _, tc := range []struct {
		name, cause, action string
		status              int
		hold                bool
	}{
		{name: "gpu-not-registered", cause: protocol.GPUNotRegistered, status: http.StatusUnprocessableEntity,
			action: "voucher-authority node add-gpu --id node-01"},
		{name: "unknown-key", cause: protocol.UnknownKey, status: http.StatusUnauthorized,
			action: "register this node's public key"},
		{name: "a cause this version does not know, flagged hold", cause: "registration-pending", hold: true,
			status: http.StatusUnprocessableEntity, action: "fix the cause at the authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 30)
			var refusing atomic.Bool
			refusing.Store(true)
			var mu sync.Mutex
			var refused [][]byte
			a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if r.Method == http.MethodPost && refusing.Load() {
					body := readBody(r)
					if batchFirstSeq(body) >= perBatch+1 {
						mu.Lock()
						refused = append(refused, body)
						mu.Unlock()
						w.Header().Set("Content-Type", protocol.ContentType)
						w.WriteHeader(tc.status)
						fmt.Fprintf(w, `{"type":%q,"title":"t","status":%d,"detail":"GPU-x not registered","hold":%t}`,
							protocol.TypeBase+tc.cause, tc.status, tc.hold)
						return
					}
				}
				next.ServeHTTP(w, r)
			})
			opts, logs := g.loggedOptions(a.URL)
			r := g.reporter(opts)
			if err := r.Flush(context.Background()); !errors.Is(err, reporter.ErrHeld) || !strings.Contains(err.Error(), tc.action) {
				t.Fatalf("Flush = %v, want ErrHeld naming %q", err, tc.action)
			}
			st := r.Stats()
			if !st.Held || st.HeldCause != tc.cause || st.Blocked || st.DeadLetters != 0 || st.AckedHead != perBatch {
				t.Errorf("stats while held %+v", st)
			}

			r2, wc, stop := g.runProbing(&opts)
			for probe := range 3 {
				w := wc.probe(t, probe, opts.RetryWaitMax, "a held reporter")
				if sp := g.spool.Stats(); sp.DeadLetters != 0 {
					t.Fatalf("probe %d: %d dead letters, want none", probe, sp.DeadLetters)
				}
				if probe == 2 {
					refusing.Store(false) // the operator registered the GPU
				}
				w.fire <- t0
			}
			eventually(t, "delivery after the operator acted", func() bool { acked, _, _ := g.spool.Head(); return acked == 30*recsPerWindow })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if st := r2.Stats(); st.Held || st.HeldCause != "" || st.DeadLetters != 0 || st.Blocked {
				t.Errorf("stats after delivery %+v", st)
			}
			if c := a.counts(); c.Records != 30*recsPerWindow {
				t.Errorf("authority stores %d records, want %d", c.Records, 30*recsPerWindow)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(refused) < 4 {
				t.Fatalf("%d refused POSTs, want at least 4 (Flush and three probes)", len(refused))
			}
			for i, b := range refused[1:] {
				if !bytes.Equal(b, refused[0]) {
					t.Errorf("refused POST %d differs from the first: a held batch must be resent as stored", i+1)
				}
			}
			out := logs.String()
			if n := strings.Count(out, "authority holds the batch back"); n != 2 || !strings.Contains(out, tc.action) {
				t.Errorf("%d held log lines (want 2, one per reporter, naming %q):\n%s", n, tc.action, out)
			}
		})
	}
}

// TestSecondSignerBlocks: a second-signer refusal blocks without
// dead-lettering; the blocked reporter sends nothing, logs once, and
// leaves the state when the spool changes.
func TestSecondSignerBlocks(t *testing.T) {
	const perBatch = 10 * recsPerWindow
	a := newAuthority(t)
	g := newAgent(t, a.key)
	sealer, err := g.sealer.WithInstance("0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	g.sealer = sealer
	g.appendWindows(0, 30)
	a.setWrap(refuseFrom(perBatch+1, 1000, http.StatusConflict, protocol.SecondSigner))
	opts, logs := g.loggedOptions(a.URL)
	r := g.reporter(opts)
	if err := r.Flush(context.Background()); !errors.Is(err, reporter.ErrBlocked) {
		t.Fatalf("Flush = %v, want ErrBlocked", err)
	}
	st := r.Stats()
	if !st.SecondSigner || !st.Blocked || !strings.Contains(st.BlockedReason, "instance 0123456789abcdef") ||
		st.DeadLetters != 0 || st.Instance != "0123456789abcdef" {
		t.Errorf("stats %+v", st)
	}

	// A running reporter: nothing sent, nothing dead-lettered.
	posts := a.posts.Load()
	r2, wc, stop := g.runProbing(&opts)
	for range 3 {
		w := wc.next(t)
		w.fire <- t0
	}
	wc.next(t) // waiting again, having sent nothing
	if p := a.posts.Load(); p != posts+1 {
		t.Errorf("%d POSTs by the running reporter, want 1 (answered second-signer, then nothing)", p-posts)
	}
	if sp := g.spool.Stats(); sp.DeadLetters != 0 {
		t.Errorf("%d dead letters, want none", sp.DeadLetters)
	}
	if st := r2.Stats(); !st.SecondSigner || !st.Blocked {
		t.Errorf("stats of the running reporter %+v", st)
	}
	// The spool changes (here a dead letter stands for an operator's
	// re-anchor): the reporter leaves the second-signer state at the next
	// pass, which Wake starts at once, and asks the authority's head.
	gets := a.gets.Load()
	if err := g.spool.DeadLetter(context.Background(), perBatch+1, "retired by the operator"); err != nil {
		t.Fatal(err)
	}
	r2.Wake()
	wc.next(t)
	if st := r2.Stats(); st.SecondSigner {
		t.Errorf("still second-signer after the spool changed: %+v", st)
	}
	if g := a.gets.Load(); g != gets+1 {
		t.Errorf("%d head reads after the spool changed, want 1", g-gets)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "ANOTHER COPY"); n != 2 {
		t.Errorf("%d second-signer log lines, want 2 (one per reporter):\n%s", n, logs.String())
	}
}

// TestClockOffset: the offset comes from a problem's authority_time when
// one is given, is kept when a later Date header agrees with it, and from
// the Date header (to the second) otherwise; past MaxClockOffset it is
// logged.
func TestClockOffset(t *testing.T) {
	httpDate := func(d time.Duration) string { return t0.Add(d).UTC().Format(http.TimeFormat) }
	for _, tc := range []struct {
		name       string
		firstAt    *time.Duration // authority_time of a first 503; nil: no 503
		date       time.Duration  // Date of every answer, from t0
		want       time.Duration
		wantSource string
		warned     bool
	}{
		{name: "authority_time, Date agrees", firstAt: ptr(1234 * time.Millisecond), date: time.Second,
			want: 1234 * time.Millisecond, wantSource: reporter.ClockSourceProblem},
		{name: "authority_time, Date disagrees", firstAt: ptr(1234 * time.Millisecond), date: 10 * time.Second,
			want: 10500 * time.Millisecond, wantSource: reporter.ClockSourceDate, warned: true},
		{name: "Date only, behind", date: -5 * time.Second,
			want: -4500 * time.Millisecond, wantSource: reporter.ClockSourceDate, warned: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 2)
			var first atomic.Bool
			first.Store(tc.firstAt != nil)
			a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				w.Header().Set("Date", httpDate(tc.date))
				if r.Method == http.MethodPost && first.CompareAndSwap(true, false) {
					w.Header().Set("Content-Type", protocol.ContentType)
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprintf(w, `{"type":%q,"title":"t","status":503,"authority_time":%q}`,
						protocol.TypeBase+protocol.Internal, t0.Add(*tc.firstAt).Format(time.RFC3339Nano))
					return
				}
				next.ServeHTTP(w, r)
			})
			opts, logs := g.loggedOptions(a.URL)
			st := g.flushed(opts).Stats()
			if !st.ClockOffsetKnown || st.ClockOffset != tc.want || st.ClockOffsetSource != tc.wantSource {
				t.Errorf("offset %s from %q (known %t), want %s from %q", st.ClockOffset, st.ClockOffsetSource, st.ClockOffsetKnown, tc.want, tc.wantSource)
			}
			if warned := strings.Contains(logs.String(), "check this host's time synchronisation"); warned != tc.warned {
				t.Errorf("warned %t, want %t:\n%s", warned, tc.warned, logs.String())
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestOverloadedWaitsRetryAfterSpread: an authority that sheds the batch
// (503 overloaded with Retry-After, as its admission control answers) is
// sent the same batch again after Retry-After spread over [d, 1.5·d],
// waited on the injected clock: never sooner than asked, and not at the
// same instant as every other node told the same. Shedding is transient:
// not held, nothing dead-lettered, and everything is delivered in the end,
// stored once.
func TestOverloadedWaitsRetryAfterSpread(t *testing.T) {
	const shed = 4
	a, g := authorityAndAgent(t, 2)
	posts := refuseFirstPosts(a, shed, http.StatusServiceUnavailable, protocol.Overloaded, "2")
	r, wc, done := flushOnWaitClock(g, a)
	waits := map[time.Duration]bool{}
	for i := range shed {
		w := wc.next(t)
		if w.d < 2*time.Second || w.d > 3*time.Second {
			t.Errorf("wait %d is %s after a 503 with Retry-After: 2, want 2s..3s", i, w.d)
		}
		waits[w.d] = true
		if st := r.Stats(); st.Held || st.DeadLetters != 0 || st.Blocked || st.LastErrorCause != protocol.Overloaded {
			t.Errorf("stats while shed %+v, want a transient failure of cause %s", st, protocol.Overloaded)
		}
		w.fire <- t0
	}
	if len(waits) < 2 {
		t.Errorf("%d shed answers waited %v: the same each time, want them spread", shed, waits)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertDelivered(t, a, g, 2*recsPerWindow)
	if p := posts.Load(); p != shed+1 {
		t.Errorf("%d POSTs, want %d shed and 1 stored", p, shed)
	}
}

// refuseFirstPosts makes a answer its first n POSTs with a problem of
// status and cause and Retry-After retryAfter; it counts every POST.
func refuseFirstPosts(a *authority, n int64, status int, cause, retryAfter string) *atomic.Int64 {
	var posts atomic.Int64
	a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && posts.Add(1) <= n {
			w.Header().Set("Retry-After", retryAfter)
			problemAnswer(w, status, cause, "refused by the test", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
	return &posts
}

// flushOnWaitClock starts g's reporter flushing to a, waiting on a
// waitClock the test drives; done has Flush's result.
func flushOnWaitClock(g *agent, a *authority) (*reporter.Reporter, *waitClock, <-chan error) {
	wc := newWaitClock(g.t)
	opts := g.options(a.URL)
	opts.Clock = wc
	r := g.reporter(opts)
	done := make(chan error, 1)
	go func() { done <- r.Flush(context.Background()) }()
	return r, wc, done
}

// TestFleetAgainstAdmission: several reporters drain at once into a real
// authority that ingests one batch at a time and sheds the rest within a
// millisecond. Every record arrives, each batch is stored once, and no
// request is abandoned by the reporter's timeout and sent again (the
// authority answers 200 or 503 well inside it): no batch is acknowledged
// as a duplicate.
func TestFleetAgainstAdmission(t *testing.T) {
	const nodes, windows = 6, 12
	keys := make([]ed25519.PrivateKey, nodes)
	var reg []authoritytest.Node
	for n := range keys {
		keys[n] = newKey(t)
		reg = append(reg, authoritytest.Node{ID: fleetNode(n), Provider: provider,
			PublicKey: keys[n].Public().(ed25519.PublicKey), GPUs: []string{fleetGPU(n)}})
	}
	auth := authoritytest.New(t, authoritytest.Options{Nodes: reg, Clock: clock.NewVirtual(t0),
		Admission: server.Admission{MaxConcurrent: 1, MaxWait: time.Millisecond, RetryAfter: time.Second}})
	var wg sync.WaitGroup
	reps := make([]*reporter.Reporter, nodes)
	for n := range nodes {
		g := newAgent(t, keys[n])
		se, err := ledger.NewSealer(fleetNode(n), keys[n], func() time.Time { return t0 })
		if err != nil {
			t.Fatal(err)
		}
		g.sealer = se
		for i := range windows {
			// One window of node n's one GPU a batch: the reporter sends
			// each on its own, so the nodes keep colliding.
			var recs []protocol.Record
			for _, r := range window(i)[:5] {
				r.Node, r.GPUUUID, r.ParentUUID = fleetNode(n), fleetGPU(n), fleetGPU(n)
				r.ID = r.ComputeID()
				recs = append(recs, r)
			}
			if err := g.spool.Append(context.Background(), recs, nil); err != nil {
				t.Fatal(err)
			}
		}
		opts := g.options(auth.HTTP.URL)
		opts.MaxBatchRecords = 5
		reps[n] = g.reporter(opts)
		wg.Go(func() {
			if err := reps[n].Flush(context.Background()); err != nil {
				t.Errorf("node %d: %v", n, err)
			}
		})
	}
	wg.Wait()
	failed := int64(0)
	for n, r := range reps {
		if h := auth.Head(t, fleetNode(n)); h != windows*5 {
			t.Errorf("node %d head %d, want %d", n, h, windows*5)
		}
		st := r.Stats()
		if st.DeadLetters != 0 || st.Held || st.Blocked {
			t.Errorf("node %d stats %+v", n, st)
		}
		failed += st.FailedAttempts
	}
	if c := auth.Counts(t); c.Records != nodes*windows*5 || c.Batches != nodes*windows {
		t.Errorf("stored %+v, want %d records in %d batches", c, nodes*windows*5, nodes*windows)
	}
	m := metricsOf(t, auth.HTTP.URL)
	if !strings.Contains(m, "gpumeter_authority_batches_accepted_total{result=\"duplicate\"} 0\n") {
		t.Errorf("batches acknowledged as duplicates: a request was sent again after the authority stored it\n%s", m)
	}
	t.Logf("%d nodes x %d batches, %d failed attempts (shed)", nodes, windows, failed)
}

func fleetNode(n int) string { return fmt.Sprintf("fleet-%02d", n) }
func fleetGPU(n int) string  { return fmt.Sprintf("GPU-cccccccc-0000-4000-8000-%012d", n) }

func metricsOf(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
