package reporter_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"

	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/internal/tlog/tlogtest"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// merkleLog is the fake authority's log: a real in-memory RFC 6962 tree
// (every node kept, proofs rehashed from them) signed with a real key.
type merkleLog struct {
	mu     sync.Mutex
	signer *tlog.Signer
	tree   *tlogtest.Tree
	index  map[[32]byte]uint64 // envelope hash -> leaf index
	// tamper, when set, changes a receipt before it is served.
	tamper func(*protocol.LogReceipt)
	// posts are the envelopes POSTed, in order.
	posts [][]byte
}

func newMerkleLog(t *testing.T, signer *tlog.Signer) *merkleLog {
	return &merkleLog{signer: signer, tree: tlogtest.NewTree(), index: map[[32]byte]uint64{}}
}

func (l *merkleLog) appendLeaf(data []byte) uint64 { return l.tree.Append(data) }

func (l *merkleLog) hashes(n proof.Nodes) [][]byte { return l.tree.Hashes(n) }

func (l *merkleLog) consistency(from, to uint64) [][]byte {
	n, err := proof.Consistency(from, to)
	if err != nil {
		panic(err)
	}
	return l.hashes(n)
}

// receipt is the log part of an answer; leaf < 0 for a head read.
func (l *merkleLog) receipt(leaf int64, sizeHeader string) *protocol.LogReceipt {
	size := l.tree.Size()
	note, err := l.signer.Sign(size, l.tree.Root())
	if err != nil {
		panic(err)
	}
	rec := &protocol.LogReceipt{Checkpoint: string(note)}
	if leaf >= 0 {
		i := uint64(leaf)
		n, err := proof.Inclusion(i, size)
		if err != nil {
			panic(err)
		}
		rec.LeafIndex, rec.Inclusion = &i, l.hashes(n)
	}
	if from, err := strconv.ParseUint(sizeHeader, 10, 64); err == nil && from > 0 && from < size {
		rec.ConsistencyFrom, rec.Consistency = from, l.consistency(from, size)
	}
	if l.tamper != nil {
		l.tamper(rec)
	}
	return rec
}

// serve wraps the authority: batches accepted are appended to the log and
// answers carry receipts; the log's endpoints are served.
func (l *merkleLog) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case r.URL.Path == protocol.PathLogKey:
		_, _ = w.Write([]byte(l.signer.VerifierKey()))
		return
	case r.URL.Path == protocol.PathLogConsistency:
		from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
		if from == 0 || to > l.tree.Size() || from > to {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(protocol.LogProof{Size: to, Hashes: l.consistency(from, to)})
		return
	}
	var env []byte
	if r.Method == http.MethodPost {
		env = readBody(r)
		l.posts = append(l.posts, env)
	}
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		copyAnswer(w, rec, rec.Body.Bytes())
		return
	}
	var body []byte
	if r.Method == http.MethodPost {
		var ans protocol.BatchAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
			panic(err)
		}
		sum := sha256.Sum256(env)
		i, ok := l.index[sum]
		if !ok {
			first, last := batchSeqs(env)
			i = l.appendLeaf(tlog.BatchLeaf(node, first, last, env))
			l.index[sum] = i
		}
		ans.Log = l.receipt(int64(i), r.Header.Get(protocol.LogSizeHeader))
		body, _ = json.Marshal(ans)
	} else {
		var ans protocol.HeadAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
			panic(err)
		}
		ans.Log = l.receipt(-1, r.Header.Get(protocol.LogSizeHeader))
		body, _ = json.Marshal(ans)
	}
	copyAnswer(w, rec, body)
}

func copyAnswer(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// batchLastSeq reads last_seq from an envelope's payload (0 if unreadable).
func batchLastSeq(env []byte) uint64 {
	_, last := batchSeqs(env)
	return last
}

// logAuthority is a real authority behind a real verifiable log.
func logAuthority(t *testing.T, signer *tlog.Signer, key []byte) (*authority, *merkleLog) {
	t.Helper()
	a := newAuthorityWithKey(t, key)
	l := newMerkleLog(t, signer)
	a.setWrap(l.serve)
	return a, l
}

func newLogSigner(t *testing.T) *tlog.Signer {
	t.Helper()
	s, err := tlog.NewSigner("authority.test/log", newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// retainingAgent is an agent whose spool retains acknowledged batches.
func retainingAgent(t *testing.T, key []byte) *agent {
	t.Helper()
	g := newAgent(t, key)
	_ = g.spool.Close()
	sp, err := spool.Open(spool.Options{Path: t.TempDir() + "/spool.db", RetainAcked: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	g.spool = sp
	return g
}

func TestLogReceiptsVerifiedAndKept(t *testing.T) {
	signer := newLogSigner(t)
	key := newKey(t)
	a, l := logAuthority(t, signer, key)
	g := retainingAgent(t, key)
	g.appendWindows(0, 40)
	opts := g.options(a.URL)
	opts.LogKey = signer.VerifierKey()
	st := g.flushed(opts).Stats()
	if len(st.LogVerifyFailures) != 0 || st.LogInconsistent || st.LogCheckpointSize != 4 {
		t.Fatalf("stats %+v", st)
	}
	if g.spool.LogSize() != 4 || len(l.posts) != 4 {
		t.Fatalf("kept log size %d, posts %d", g.spool.LogSize(), len(l.posts))
	}
}

func TestLogKeyTrustedOnFirstUse(t *testing.T) {
	signer, _, _, g, logs, _ := deliveredWithLog(t, "")
	if g.spool.LogKey() != signer.VerifierKey() || !strings.Contains(logs.String(), "trusting the log key the authority serves on first use") {
		t.Fatalf("pinned %q; log:\n%s", g.spool.LogKey(), logs.String())
	}
}

// deliveredWithLog delivers 10 windows to a log authority, with the log
// key configured (logKey != "") or trusted on first use.
func deliveredWithLog(t *testing.T, logKey string) (*tlog.Signer, *authority, *merkleLog, *agent, *logBuffer, reporter.Options) {
	t.Helper()
	signer := newLogSigner(t)
	key := newKey(t)
	a, l := logAuthority(t, signer, key)
	g := retainingAgent(t, key)
	g.appendWindows(0, 10)
	opts, logs := g.loggedOptions(a.URL)
	if logKey != "" {
		opts.LogKey = signer.VerifierKey()
	}
	g.flushed(opts)
	return signer, a, l, g, logs, opts
}

// conflictCase runs one delivery against a log that misbehaves after the
// first batch, and checks that the agent holds delivery, loudly.
func conflictCase(t *testing.T, reason string, misbehave func(l *merkleLog)) {
	t.Helper()
	_, a, l, g, logs, opts := deliveredWithLog(t, "configured")
	l.mu.Lock()
	misbehave(l)
	l.mu.Unlock()
	g.appendWindows(10, 30)
	r := g.reporter(opts)
	if err := r.Flush(context.Background()); !errors.Is(err, reporter.ErrBlocked) {
		t.Fatalf("Flush = %v, want ErrBlocked", err)
	}
	st := r.Stats()
	if !st.LogInconsistent || st.LogVerifyFailures[reason] != 1 || !strings.HasPrefix(g.spool.LogConflict(), reason+":") {
		t.Fatalf("stats %+v, conflict %q", st, g.spool.LogConflict())
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"the AUTHORITY'S LOG CONTRADICTS") {
		t.Fatalf("no error logged:\n%s", logs.String())
	}
	// Held across a restart: a new reporter sends nothing.
	posts := a.posts.Load()
	if err := g.reporter(opts).Flush(context.Background()); !errors.Is(err, reporter.ErrBlocked) || a.posts.Load() != posts {
		t.Fatalf("after restart: %v, %d more posts", err, a.posts.Load()-posts)
	}
	// Every batch is kept: pending or unacknowledged or retained.
	sp := g.spool.Stats()
	if sp.PendingRecords+sp.UnackedBatches+sp.AckedBatches == 0 {
		t.Fatalf("spool %+v", sp)
	}
	// The operator's accept-log ends the hold.
	if _, err := g.spool.AcceptLog(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.spool.LogConflict() != "" {
		t.Fatal("conflict survives accept-log")
	}
}

func TestForgedInclusionHolds(t *testing.T) {
	conflictCase(t, reporter.LogInclusion, func(l *merkleLog) {
		l.tamper = func(rec *protocol.LogReceipt) {
			if len(rec.Inclusion) > 0 {
				rec.Inclusion[0] = bytes.Repeat([]byte{7}, 32)
			}
		}
	})
}

func TestRewrittenHistoryHolds(t *testing.T) {
	conflictCase(t, reporter.LogInconsistent, func(l *merkleLog) {
		// The log is rebuilt with a different first leaf: every later
		// checkpoint contradicts the one the agent kept.
		old := l.tree
		l.tree = tlogtest.NewTree()
		l.appendLeaf([]byte("rewritten"))
		for i := uint64(1); i < old.Size(); i++ {
			l.appendLeaf([]byte{byte(i)})
		}
		l.index = map[[32]byte]uint64{}
	})
}

func TestSplitViewHolds(t *testing.T) {
	conflictCase(t, reporter.LogInconsistent, func(l *merkleLog) {
		// A head read answered with another root for the size kept.
		l.tamper = func(rec *protocol.LogReceipt) {
			if rec.LeafIndex == nil {
				note, _ := l.signer.Sign(l.tree.Size(), tlog.LeafHash([]byte("other view")))
				rec.Checkpoint = string(note)
			}
		}
	})
}

func TestForeignKeyCheckpointHolds(t *testing.T) {
	other := newLogSigner(t)
	conflictCase(t, reporter.LogSignature, func(l *merkleLog) { l.signer = other })
}

// restoredAuthority: a first authority accepts every batch; a second one
// (the first restored from a backup taken after `kept` batches) holds only
// those, in the same log order. The agent sends it the rest again.
func restoredAuthority(t *testing.T, kept int, prepare func(l *merkleLog)) (g *agent, first, second *authority, l1, l2 *merkleLog, opts reporter.Options) {
	t.Helper()
	signer := newLogSigner(t)
	key := newKey(t)
	first, l1 = logAuthority(t, signer, key)
	g = retainingAgent(t, key)
	g.appendWindows(0, 60)
	opts = g.options(first.URL)
	opts.LogKey = signer.VerifierKey()
	g.flushed(opts)
	second, l2 = logAuthority(t, signer, key)
	if prepare != nil {
		prepare(l2)
	}
	for _, env := range l1.posts[:kept] {
		postDirect(t, second, env)
	}
	opts.URL = second.URL
	return g, first, second, l1, l2, opts
}

func TestRestoredAuthorityGetsLostBatchesByteForByte(t *testing.T) {
	g, first, second, l1, l2, opts := restoredAuthority(t, 2, nil)
	var logs logBuffer
	opts.Log = logs.logger()
	r := g.reporter(opts)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v\n%s", err, logs.String())
	}
	if second.head() != first.head() || second.counts() != first.counts() {
		t.Fatalf("restored head %d counts %+v, want %d %+v", second.head(), second.counts(), first.head(), first.counts())
	}
	// Sent again: exactly the envelopes the first authority got after the
	// backup, in order.
	resent := l2.posts[2:]
	var sent [][]byte
	for _, p := range resent {
		if batchFirstSeq(p) > 0 {
			sent = append(sent, p)
		}
	}
	want := l1.posts[2:]
	if len(sent) < len(want) {
		t.Fatalf("resent %d batches, want %d", len(sent), len(want))
	}
	for i, w := range want {
		if !bytes.Contains(bytes.Join(sent, nil), w) {
			t.Fatalf("batch %d (first seq %d) not resent byte for byte", i, batchFirstSeq(w))
		}
	}
	st := r.Stats()
	if st.Recoveries != 1 || st.RecoveredBatches != int64(len(want)) || st.LogInconsistent || len(st.LogVerifyFailures) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"the authority was restored from a backup") {
		t.Fatalf("no warning:\n%s", logs.String())
	}
}

// TestRestoredAuthorityGrownAgainByOthers: before this agent reads the
// restored authority's head, other nodes' batches (sent again, or new)
// have grown its tree past the checkpoints this agent kept from the
// history the restore lost. Those checkpoints are dropped, not held as a
// conflict: the tree extends the newest one kept from before the backup,
// and the lost batches are sent again.
func TestRestoredAuthorityGrownAgainByOthers(t *testing.T) {
	g, first, second, l1, l2, opts := restoredAuthority(t, 2, nil)
	l2.mu.Lock()
	for l2.tree.Size() < l1.tree.Size()+3 {
		l2.appendLeaf([]byte("another node's batch " + strconv.FormatUint(l2.tree.Size(), 10)))
	}
	l2.mu.Unlock()
	var logs logBuffer
	opts.Log = logs.logger()
	r := g.reporter(opts)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v\n%s", err, logs.String())
	}
	if second.head() != first.head() {
		t.Fatalf("restored head %d, want %d", second.head(), first.head())
	}
	st := r.Stats()
	if st.Recoveries != 1 || st.LogInconsistent || st.LogVerifyFailures[reporter.LogInconsistent] != 0 {
		t.Fatalf("stats %+v\n%s", st, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"the restored authority's log grew again past checkpoints kept here") {
		t.Fatalf("no warning naming the dropped checkpoints:\n%s", logs.String())
	}
}

func TestRestoredAuthorityWithContradictingLogRefused(t *testing.T) {
	g, _, second, _, l2, opts := restoredAuthority(t, 2, func(l *merkleLog) {
		l.appendLeaf([]byte("a leaf the first authority never had"))
	})
	postsBefore := second.posts.Load()
	r := g.reporter(opts)
	err := r.Flush(context.Background())
	if !errors.Is(err, reporter.ErrBlocked) {
		t.Fatalf("Flush = %v, want ErrBlocked", err)
	}
	st := r.Stats()
	if !st.LogInconsistent || st.LogVerifyFailures[reporter.LogInconsistent] == 0 || st.Recoveries != 0 {
		t.Fatalf("stats %+v", st)
	}
	// At most the one POST that found the gap; nothing resent.
	if n := second.posts.Load() - postsBefore; n > 1 || second.head() != batchLastSeqOf(l2, 2) {
		t.Fatalf("%d posts after the refusal, head %d", n, second.head())
	}
}

func TestRestoredAuthorityWithoutLogOnHeadHash(t *testing.T) {
	key := newKey(t)
	first := newAuthorityWithKey(t, key)
	g := retainingAgent(t, key)
	g.appendWindows(0, 40)
	g.flushed(g.options(first.URL))
	kept, err := g.spool.Retained(context.Background())
	if err != nil || len(kept) != 4 {
		t.Fatalf("retained %d, %v", len(kept), err)
	}
	second := newAuthorityWithKey(t, key)
	postDirect(t, second, kept[0].Envelope)
	r := g.flushed(g.options(second.URL))
	if second.head() != first.head() || second.counts() != first.counts() || r.Stats().RecoveredBatches != 3 {
		t.Fatalf("head %d counts %+v stats %+v", second.head(), second.counts(), r.Stats())
	}
}

func batchLastSeqOf(l *merkleLog, n int) uint64 { return batchLastSeq(l.posts[n-1]) }
