package agent

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// A failing append (the spool's file unusable, as on a full disk) raises
// the gauge at once, logs the first failure and then at most one line a
// minute, and the held records come back from store exactly once, with the
// first append that succeeds: the records file writes what store returns.
func TestFailingAppendIsHeldGaugedAndLoggedSparingly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	sp, err := spool.Open(spool.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &delivery{log: slog.New(slog.NewTextHandler(&logs, nil)), spool: sp, now: func() time.Time { return now }}
	_ = sp.Close() // every append now fails, as writes to a full disk do
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	window := func(i int) []protocol.Record { return idleWindow(start, i) }
	var held int
	for i := range 5 {
		stored, full, err := d.store(ctx, window(i), meter.Checkpoint{})
		if stored != nil || full || err != nil {
			t.Fatalf("failing store %d: stored %d, full %v, err %v", i, len(stored), full, err)
		}
		held += len(window(i))
		if !d.appendFailing() || d.heldRecords() != held {
			t.Fatalf("after %d failures: failing %v, held %d", i+1, d.appendFailing(), d.heldRecords())
		}
		now = now.Add(20 * time.Second)
	}
	// Failures at 0s, 20s, 40s, 60s, 80s: logged at 0s and 60s.
	if n := strings.Count(logs.String(), "cannot store records"); n != 2 {
		t.Fatalf("%d error lines, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "not_logged_since_last_line=2") {
		t.Fatalf("the second line does not count the lines left out:\n%s", logs.String())
	}
	sp, err = spool.Open(spool.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	d.spool = sp
	stored, full, err := d.store(ctx, window(5), meter.Checkpoint{})
	if err != nil || full || len(stored) != held+len(window(5)) || d.appendFailing() || d.heldRecords() != 0 {
		t.Fatalf("recovering store: %d stored, full %v, err %v, failing %v", len(stored), full, err, d.appendFailing())
	}
	for i, r := range stored[:len(window(0))] {
		if r.ID != window(0)[i].ID {
			t.Fatalf("held records out of order at %d", i)
		}
	}
	if again, _, _ := d.store(ctx, nil, meter.Checkpoint{}); again != nil {
		t.Fatalf("records stored twice: %d", len(again))
	}
	if st := sp.Stats(); st.PendingRecords != int64(held+len(window(5))) {
		t.Fatalf("spool holds %d records", st.PendingRecords)
	}
}
