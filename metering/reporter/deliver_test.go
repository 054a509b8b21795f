package reporter_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// assertDelivered checks that the authority holds exactly the appended
// records once each, and the spool holds nothing unacknowledged.
func assertDelivered(t *testing.T, a *authority, g *agent, records int) {
	t.Helper()
	if h := a.head(); h != uint64(records) {
		t.Errorf("authority head = %d, want %d", h, records)
	}
	if c := a.counts(); c.Records != int64(records) {
		t.Errorf("authority stores %d records, want %d (once each)", c.Records, records)
	}
	st := g.spool.Stats()
	if st.PendingRecords != 0 || st.UnackedBatches != 0 || st.DeadLetters != 0 {
		t.Errorf("spool after delivery: %+v, want nothing pending, unacknowledged or dead", st)
	}
	if acked, sealed, _ := g.spool.Head(); acked != uint64(records) || sealed != uint64(records) {
		t.Errorf("spool acked %d sealed %d, want %d", acked, sealed, records)
	}
}

func TestBacklogDeliveredInOrder(t *testing.T) {
	tests := []struct {
		name            string
		windows         int
		maxBatchRecords int
		maxInFlight     int
		useRun          bool // Run with Notify instead of Flush
	}{
		{name: "one window", windows: 1, maxBatchRecords: 1000, maxInFlight: 4},
		{name: "many batches, flush", windows: 120, maxBatchRecords: 10 * recsPerWindow, maxInFlight: 4},
		{name: "one batch in flight", windows: 30, maxBatchRecords: 3 * recsPerWindow, maxInFlight: 1},
		{name: "window split across batches", windows: 5, maxBatchRecords: 7, maxInFlight: 2},
		{name: "run and notify", windows: 60, maxBatchRecords: 10 * recsPerWindow, maxInFlight: 2, useRun: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, tc.windows)
			opts := g.options(a.URL)
			opts.MaxBatchRecords, opts.MaxInFlight = tc.maxBatchRecords, tc.maxInFlight
			r := g.reporter(opts)
			total := tc.windows * recsPerWindow
			if tc.useRun {
				stop := run(t, r)
				eventually(t, "backlog acknowledged", func() bool { acked, _, _ := g.spool.Head(); return acked == uint64(total) })
				// More records later: Notify wakes the idle loop.
				g.appendWindows(tc.windows, tc.windows+3)
				r.Notify()
				total += 3 * recsPerWindow
				eventually(t, "new records acknowledged", func() bool { acked, _, _ := g.spool.Head(); return acked == uint64(total) })
				if err := stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else if err := r.Flush(context.Background()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			assertDelivered(t, a, g, total)
			st := r.Stats()
			wantBatches := (total + tc.maxBatchRecords - 1) / tc.maxBatchRecords
			if !tc.useRun && tc.maxBatchRecords%recsPerWindow == 0 && st.SentBatches != int64(wantBatches) {
				t.Errorf("sent %d batches, want %d", st.SentBatches, wantBatches)
			}
			if st.SentRecords != int64(total) || st.Duplicates != 0 || st.DeadLetters != 0 || st.Blocked ||
				st.AckedHead != uint64(total) || st.AuthorityHead != uint64(total) || st.LastSuccess.IsZero() {
				t.Errorf("stats %+v", st)
			}
			if c := a.counts(); c.Batches != st.SentBatches {
				t.Errorf("authority stores %d batches, reporter sent %d", c.Batches, st.SentBatches)
			}
		})
	}
}

func TestLostAnswerIsResentIdempotently(t *testing.T) {
	tests := []struct {
		name string
		// restart: the first reporter gives up (authority then down) and a
		// new one reconciles from GET head instead of resending.
		restart        bool
		wantDuplicates int64
	}{
		{name: "retried within the send", wantDuplicates: 1},
		{name: "new reporter reconciles from head", restart: true, wantDuplicates: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 10)
			var dropped atomic.Bool
			a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				switch {
				case r.Method == http.MethodPost && dropped.CompareAndSwap(false, true):
					dropAfterServing(w, r, next)
				case tc.restart && dropped.Load():
					problemAnswer(w, http.StatusServiceUnavailable, protocol.Internal, "down", nil)
				default:
					next.ServeHTTP(w, r)
				}
			})
			opts := g.options(a.URL)
			opts.MaxBatchRecords = 5 * recsPerWindow
			if tc.restart {
				ctx, cancel := context.WithCancel(context.Background())
				stop := make(chan error, 1)
				r1 := g.reporter(opts)
				go func() { stop <- r1.Flush(ctx) }()
				eventually(t, "the first reporter to fail", func() bool { return r1.Stats().ConsecutiveFailures >= 2 })
				cancel()
				if err := <-stop; !errors.Is(err, context.Canceled) {
					t.Fatalf("Flush of the first reporter = %v, want context.Canceled", err)
				}
				if a.head() != 5*recsPerWindow {
					t.Fatalf("authority head %d, want the first batch stored", a.head())
				}
				a.setWrap(nil)
			}
			r := g.flushed(opts)
			assertDelivered(t, a, g, 10*recsPerWindow)
			if c := a.counts(); c.Batches != 2 {
				t.Errorf("authority stores %d batches, want 2", c.Batches)
			}
			if d := r.Stats().Duplicates; d != tc.wantDuplicates {
				t.Errorf("duplicates = %d, want %d", d, tc.wantDuplicates)
			}
		})
	}
}

func TestOutageDrains(t *testing.T) {
	tests := []struct {
		name string
		down func(w http.ResponseWriter)
	}{
		{name: "503", down: func(w http.ResponseWriter) {
			problemAnswer(w, http.StatusServiceUnavailable, protocol.Internal, "maintenance", nil)
		}},
		{name: "connection dropped", down: dropConnection},
		{name: "500", down: func(w http.ResponseWriter) {
			problemAnswer(w, http.StatusInternalServerError, protocol.Internal, "db down", nil)
		}},
		{name: "408", down: func(w http.ResponseWriter) { w.WriteHeader(http.StatusRequestTimeout) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 20)
			var down atomic.Bool
			var failed atomic.Int64
			down.Store(true)
			a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if down.Load() {
					failed.Add(1)
					tc.down(w)
					return
				}
				next.ServeHTTP(w, r)
			})
			opts := g.options(a.URL)
			r := g.reporter(opts)
			stop := run(t, r)
			eventually(t, "several failed attempts", func() bool { return failed.Load() >= 6 })
			// Records keep arriving during the outage: they stay pending
			// beyond MaxInFlight sealed batches.
			g.appendWindows(20, 60)
			r.Notify()
			eventually(t, "the reporter to count failures", func() bool { return r.Stats().ConsecutiveFailures >= 2 })
			if st := g.spool.Stats(); st.UnackedBatches > int64(opts.MaxInFlight) {
				t.Errorf("%d batches sealed during the outage, want at most MaxInFlight %d", st.UnackedBatches, opts.MaxInFlight)
			}
			if st := r.Stats(); st.LastError == "" || st.FailedAttempts < 2 || st.Blocked {
				t.Errorf("stats during the outage %+v", st)
			}
			down.Store(false)
			start := time.Now()
			total := 60 * recsPerWindow
			eventually(t, "the backlog to drain", func() bool { acked, _, _ := g.spool.Head(); return acked == uint64(total) })
			el := time.Since(start)
			t.Logf("drained %d records in %s after the outage: %.0f records/s", total, el, float64(total)/el.Seconds())
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			assertDelivered(t, a, g, total)
			if st := r.Stats(); st.ConsecutiveFailures != 0 || st.Duplicates != 0 {
				t.Errorf("stats after the outage %+v", st)
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	a, g := authorityAndAgent(t, 2)
	posted := recordFirst(a, http.MethodPost, func(*http.Request) time.Time { return time.Now() }, func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		problemAnswer(w, http.StatusTooManyRequests, "rate-limited", "slow down", nil)
	})
	r := g.flushed(g.options(a.URL))
	assertDelivered(t, a, g, 2*recsPerWindow)
	times := posted()
	if len(times) != 2 {
		t.Fatalf("%d POSTs, want 2 (one 429, one accepted)", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("resent %s after a 429 with Retry-After: 1, want at least 1s", gap)
	}
	if st := r.Stats(); st.FailedAttempts != 1 {
		t.Errorf("failed attempts %d, want 1", st.FailedAttempts)
	}
}

func TestSequenceGapResendsFromExpected(t *testing.T) {
	tests := []struct{ name, cause string }{
		{name: "sequence-gap", cause: protocol.SequenceGap},
		{name: "chain-broken", cause: protocol.ChainBroken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 30)
			var answered atomic.Bool
			a.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				// The second batch is answered 409 once, expecting what the
				// authority's head says.
				if r.Method == http.MethodPost && a.head() > 0 && answered.CompareAndSwap(false, true) {
					exp := a.head() + 1
					problemAnswer(w, http.StatusConflict, tc.cause, "authority restarted from a copy", &exp)
					return
				}
				next.ServeHTTP(w, r)
			})
			r := g.flushed(g.options(a.URL))
			assertDelivered(t, a, g, 30*recsPerWindow)
			st := r.Stats()
			if st.Duplicates != 0 || st.DeadLetters != 0 || st.SentBatches != 3 {
				t.Errorf("stats %+v, want 3 batches, no duplicate or dead letter", st)
			}
			if p, gets := a.posts.Load(), a.gets.Load(); p != 4 || gets != 2 {
				t.Errorf("%d POSTs and %d GETs, want 4 (one answered 409) and 2 (start, after the 409)", p, gets)
			}
		})
	}
}

func TestHeadReconcilesAtStart(t *testing.T) {
	tests := []struct {
		name   string
		stored int // of the 3 sealed batches, delivered before the reporter starts
	}{
		{name: "none stored", stored: 0},
		{name: "first stored", stored: 1},
		{name: "two stored", stored: 2},
		{name: "all stored", stored: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 30)
			// A previous run sealed three batches and delivered some, and
			// crashed before acknowledging them in the spool.
			bs := sealBatches(t, g, 3, 10*recsPerWindow)
			for _, b := range bs[:tc.stored] {
				postDirect(t, a, b.Envelope)
			}
			r := g.flushed(g.options(a.URL))
			assertDelivered(t, a, g, 30*recsPerWindow)
			if st := r.Stats(); st.SentBatches != int64(3-tc.stored) || st.Duplicates != 0 {
				t.Errorf("stats %+v: want only the %d batches not stored sent", st, 3-tc.stored)
			}
			if p := a.posts.Load(); p != int64(3) {
				t.Errorf("%d POSTs in all, want 3 (nothing resent)", p)
			}
		})
	}
}
