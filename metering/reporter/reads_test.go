package reporter_test

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// TestWindowNotEndedIsRetried: 425 window-not-ended (a record's window
// ends after the authority's clock) is transient: the batch is sent again
// after Retry-After, within one send or by the loop, and never
// dead-lettered.
func TestWindowNotEndedIsRetried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		retryMax int
	}{
		{name: "retried within the send", retryMax: 0},
		{name: "retried by the loop", retryMax: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuthority(t)
			g := newAgent(t, a.key)
			g.appendWindows(0, 2)
			var mu sync.Mutex
			var times []time.Time
			a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if r.Method != http.MethodPost {
					next.ServeHTTP(w, r)
					return
				}
				mu.Lock()
				times = append(times, time.Now())
				first := len(times) == 1
				mu.Unlock()
				if first {
					w.Header().Set("Retry-After", "1")
					problemAnswer(w, http.StatusTooEarly, protocol.WindowNotEnded, "window ends after the authority's now", nil)
					return
				}
				next.ServeHTTP(w, r)
			})
			opts := g.options(a.URL)
			opts.RetryMax = tc.retryMax
			r := g.reporter(opts)
			if err := r.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			assertDelivered(t, a, g, 2*recsPerWindow)
			mu.Lock()
			defer mu.Unlock()
			if len(times) != 2 {
				t.Fatalf("%d POSTs, want 2 (one 425, one accepted)", len(times))
			}
			if gap := times[1].Sub(times[0]); gap < time.Second {
				t.Errorf("resent %s after a 425 with Retry-After: 1, want at least 1s", gap)
			}
			if st := r.Stats(); st.DeadLetters != 0 || st.Blocked {
				t.Errorf("stats %+v: a 425 dead-lettered or blocked delivery", st)
			}
		})
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
	a := newAuthority(t)
	g := newAgent(t, a.key)
	g.appendWindows(0, 1)
	var mu sync.Mutex
	var auths []protocol.ReadAuth
	a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		ra, err := protocol.ParseReadAuth(r.Header.Get("Authorization"))
		if err != nil || ra.KeyID != g.sealer.KeyID() || !ra.Verify(a.key.Public().(ed25519.PublicKey), r.Method, r.URL.RequestURI()) {
			t.Errorf("GET %s: authorization %q (%v) is not a read signed by the node's key", r.URL.RequestURI(), r.Header.Get("Authorization"), err)
		}
		mu.Lock()
		auths = append(auths, ra)
		first := len(auths) == 1
		mu.Unlock()
		if first {
			problemAnswer(w, http.StatusServiceUnavailable, protocol.Internal, "try again", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
	opts := g.options(a.URL)
	opts.Clock = &steppingClock{}
	if err := g.reporter(opts).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertDelivered(t, a, g, recsPerWindow)
	mu.Lock()
	defer mu.Unlock()
	if len(auths) != 2 || !auths[1].Time.After(auths[0].Time) {
		t.Fatalf("GET head signed at %+v: want two reads, the retry signed later", auths)
	}
}
