package reporter_test

import (
	"context"
	"crypto/ed25519"
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
