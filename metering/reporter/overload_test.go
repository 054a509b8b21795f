package reporter_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

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
	a := newAuthority(t)
	g := newAgent(t, a.key)
	g.appendWindows(0, 2)
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
