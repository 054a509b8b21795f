package reporter_test

import (
	"crypto/ed25519"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// TestWindowNotEndedIsRetried: 425 window-not-ended (a record's window
// ends after the authority's clock) is a held refusal: the batch is sent
// again after Retry-After, waited on the injected clock, and never
// dead-lettered.
func TestWindowNotEndedIsRetried(t *testing.T) {
	a, g := authorityAndAgent(t, 2)
	posts := refuseFirstPosts(a, 1, http.StatusTooEarly, protocol.WindowNotEnded, "7")
	r, wc, done := flushOnWaitClock(g, a)
	w := wc.next(t)
	if w.d != 7*time.Second {
		t.Errorf("waits %s after a 425 with Retry-After: 7, want 7s", w.d)
	}
	if st := r.Stats(); !st.Held || st.HeldCause != protocol.WindowNotEnded || st.DeadLetters != 0 || st.Blocked {
		t.Errorf("stats while held %+v", st)
	}
	if p := posts.Load(); p != 1 {
		t.Errorf("%d POSTs before the wait ended, want 1", p)
	}
	w.fire <- t0
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertDelivered(t, a, g, 2*recsPerWindow)
	if st := r.Stats(); st.Held || st.DeadLetters != 0 || st.Blocked {
		t.Errorf("stats after delivery %+v", st)
	}
}

// steppingClock reads a second later at every call and waits in real time.
type steppingClock struct{ n atomic.Int64 }

func (c *steppingClock) Now() time.Time {
	return t0.Add(time.Duration(c.n.Add(1)) * time.Second)
}
func (c *steppingClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// TestHeadReadIsSigned: GET head carries a read signed by the node's key
// over the method and the request URI, and a retried read is signed
// again, at the clock's new now.
func TestHeadReadIsSigned(t *testing.T) {
	a, g := authorityAndAgent(t, 1)
	reads := recordFirst(a, http.MethodGet, func(r *http.Request) protocol.ReadAuth {
		ra, err := protocol.ParseReadAuth(r.Header.Get("Authorization"))
		if err != nil || ra.KeyID != g.sealer.KeyID() || !ra.Verify(a.key.Public().(ed25519.PublicKey), r.Method, r.URL.RequestURI()) {
			t.Errorf("GET %s: authorization %q (%v) is not a read signed by the node's key", r.URL.RequestURI(), r.Header.Get("Authorization"), err)
		}
		return ra
	}, func(w http.ResponseWriter) {
		problemAnswer(w, http.StatusServiceUnavailable, protocol.Internal, "try again", nil)
	})
	opts := g.options(a.URL)
	opts.Clock = &steppingClock{}
	g.flushed(opts)
	assertDelivered(t, a, g, recsPerWindow)
	if auths := reads(); len(auths) != 2 || !auths[1].Time.After(auths[0].Time) {
		t.Fatalf("GET head signed at %+v: want two reads, the retry signed later", auths)
	}
}
