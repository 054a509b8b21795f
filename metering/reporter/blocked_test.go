package reporter_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/protocol"
)

// logBuffer collects log lines safely across goroutines.
type logBuffer struct{ testutil.SyncBuffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// overWallTime is window i with one record claiming more than its window.
func overWallTime(i int) []protocol.Record {
	recs := window(i)
	recs[0].GPUMillis = 61000
	return recs
}

func TestRefusalDeadLettersOnceThenHolds(t *testing.T) {
	const perBatch = 10 * recsPerWindow
	tests := []struct {
		name  string
		wrap  func(w http.ResponseWriter, r *http.Request, next http.Handler) // nil: the real authority refuses
		bad   bool                                                            // the second batch's records are over wall time
		cause string
		fork  bool
		// replayable: the dead letter is a good batch, which the operator
		// replays at the authority to unblock.
		replayable bool
	}{
		{name: "400 malformed", cause: "400 malformed", replayable: true,
			wrap: refuseFrom(201, 1, http.StatusBadRequest, protocol.Malformed)},
		{name: "422 over-wall-time from the real authority", cause: "422 over-wall-time", bad: true},
		// A fork (from an authority older than second-signer) blocks until
		// the spool changes: a replay at the authority does not end it.
		{name: "409 fork", cause: "409 fork", fork: true,
			wrap: refuseFrom(201, 1, http.StatusConflict, protocol.Fork)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, g := authorityAndAgent(t, 10)
			if tc.bad {
				var recs []protocol.Record
				for i := 10; i < 20; i++ {
					if i == 12 {
						recs = append(recs, overWallTime(i)...)
					} else {
						recs = append(recs, window(i)...)
					}
				}
				if err := g.spool.Append(context.Background(), recs, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				g.appendWindows(10, 20)
			}
			g.appendWindows(20, 50)
			a.setWrap(tc.wrap)
			opts, logs := g.loggedOptions(a.URL)
			opts.MaxBatchRecords = perBatch
			r := g.reporter(opts)

			err := r.Flush(context.Background())
			if !errors.Is(err, reporter.ErrBlocked) {
				t.Fatalf("Flush = %v, want ErrBlocked", err)
			}
			if p := a.posts.Load(); p != 2 {
				t.Errorf("%d POSTs before Flush gave up, want 2 (accepted, refused)", p)
			}
			dead, err := g.spool.DeadLetters(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].FirstSeq != perBatch+1 || !strings.HasPrefix(dead[0].Reason, tc.cause) {
				t.Fatalf("dead letters %+v, want batch %d with reason %q...", dead, perBatch+1, tc.cause)
			}
			checkHeld := func() {
				t.Helper()
				st := g.spool.Stats()
				if held := st.PendingRecords + st.UnackedBatches*perBatch; held != 30*recsPerWindow || st.DeadLetters != 1 {
					t.Errorf("spool holds %d records (%+v), want the 30 windows after the dead letter, and 1 dead letter", held, st)
				}
			}
			checkHeld()
			st := r.Stats()
			if !st.Blocked || !strings.Contains(st.BlockedReason, "dead-lettered") || st.DeadLetters != 1 ||
				(st.Forks == 1) != tc.fork || st.AckedHead != perBatch || a.head() != perBatch {
				t.Errorf("stats %+v, authority head %d", st, a.head())
			}

			// A running reporter probes the authority's head about every
			// RetryWaitMax, sends nothing and dead-letters nothing more.
			gets := a.gets.Load()
			r2, wc, stop := g.runProbing(&opts)
			for probe := range 3 {
				w := wc.probe(t, probe, opts.RetryWaitMax, "blocked reporter")
				if p := a.posts.Load(); p != 2 {
					t.Errorf("probe %d: %d POSTs in all, want 2: a blocked reporter sends nothing", probe, p)
				}
				if g := a.gets.Load(); g != gets+int64(probe)+1 && !tc.fork {
					t.Errorf("probe %d: %d GETs since blocking, want %d (one head read per probe)", probe, g-gets, probe+1)
				}
				checkHeld()
				if probe < 2 {
					w.fire <- t0
					continue
				}
				if !tc.replayable {
					break
				}
				// The operator resolves the dead letter: the authority
				// accepts it, and the next probe goes through.
				a.setWrap(nil)
				postDirect(t, a, dead[0].Envelope)
				w.fire <- t0
			}
			if tc.replayable {
				eventually(t, "delivery after the replay", func() bool { acked, _, _ := g.spool.Head(); return acked == 50*recsPerWindow })
				if st := r2.Stats(); st.Blocked || st.DeadLetters != 0 {
					t.Errorf("stats after the replay %+v, want unblocked", st)
				}
				if c := a.counts(); c.Records != 50*recsPerWindow {
					t.Errorf("authority stores %d records, want %d", c.Records, 50*recsPerWindow)
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			out := logs.String()
			if n := strings.Count(out, "dead-lettered\""); n != 1 && !tc.fork {
				t.Errorf("%d dead-letter log lines, want 1:\n%s", n, out)
			}
			if strings.Contains(out, "payloadType") || strings.Contains(out, "signatures") {
				t.Errorf("an envelope reached the log:\n%s", out)
			}
		})
	}
}

// refuseFrom answers POSTs of batches from firstSeq on (the first n of
// them) with a problem, as the authority would.
func refuseFrom(firstSeq uint64, n int, status int, cause string) func(http.ResponseWriter, *http.Request, http.Handler) {
	var mu sync.Mutex
	left := n
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && batchFirstSeq(readBody(r)) >= firstSeq {
			mu.Lock()
			refuse := left > 0
			left--
			mu.Unlock()
			if refuse {
				problemAnswer(w, status, cause, "refused by the test", nil)
				return
			}
		}
		next.ServeHTTP(w, r)
	}
}

// deliveredAgent is an agent of a's node that has metered n windows and
// delivered them to a.
func deliveredAgent(t *testing.T, a *authority, n int) *agent {
	t.Helper()
	g := newAgent(t, a.key)
	g.appendWindows(0, n)
	g.flushed(g.options(a.URL))
	return g
}

func TestAuthorityBehindAcknowledgedMark(t *testing.T) {
	a := newAuthority(t)
	g := deliveredAgent(t, a, 20)
	// The authority is restored from an empty backup (same node and key).
	b := newAuthorityWithKey(t, a.key)
	g.appendWindows(20, 30)
	opts, logs := g.loggedOptions(b.URL)
	r := g.reporter(opts)
	err := r.Flush(context.Background())
	if !errors.Is(err, reporter.ErrBlocked) {
		t.Fatalf("Flush = %v, want ErrBlocked", err)
	}
	st := r.Stats()
	// Options.RetainAcked is not set: the lost range is named.
	if !st.Blocked || !strings.Contains(st.BlockedReason, "lost seqs 1..400") || st.LostRange != "1..400" || st.AuthorityHead != 0 || st.DeadLetters != 0 {
		t.Errorf("stats %+v", st)
	}
	if c := b.counts(); c.Records != 0 {
		t.Errorf("restored authority stores %d records, want 0", c.Records)
	}
	if sp := g.spool.Stats(); sp.PendingRecords+sp.UnackedBatches*10*recsPerWindow != 10*recsPerWindow || sp.DeadLetters != 0 {
		t.Errorf("spool %+v, want the 10 new windows kept", sp)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR msg=\"the authority lost acknowledged batches that this spool no longer retains") {
		t.Errorf("no error logged for the lost data:\n%s", out)
	}
}

func TestAuthorityAheadOfSpoolSendsNothing(t *testing.T) {
	a := newAuthority(t)
	deliveredAgent(t, a, 20) // the agent whose spool is then lost
	posts := a.posts.Load()
	// The spool was lost and a new one started from seq 1.
	g := newAgent(t, a.key)
	g.appendWindows(20, 25)
	r := g.reporter(g.options(a.URL))
	if err := r.Flush(context.Background()); !errors.Is(err, reporter.ErrBlocked) {
		t.Fatalf("Flush = %v, want ErrBlocked", err)
	}
	if p := a.posts.Load(); p != posts {
		t.Errorf("%d POSTs by the new spool's reporter, want none (each would fork)", p-posts)
	}
	if _, sealed, _ := g.spool.Head(); sealed != 0 {
		t.Errorf("sealed up to %d, want nothing sealed", sealed)
	}
	if st := r.Stats(); !st.Blocked || !strings.Contains(st.BlockedReason, "beyond this spool's sealed head 0") {
		t.Errorf("stats %+v", st)
	}
	if n, _ := a.Store.Node(context.Background(), node); n.Forked {
		t.Error("the node was flagged forked")
	}
}
