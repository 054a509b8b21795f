package reporter_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
)

// A damaged spool file is replaced at open; the reporter anchors the new
// spool on the authority's head, and the authority ends with everything
// delivered before, a spool_lost gap for the time the spool lost, and
// everything metered after.
func TestReplacedSpoolAnchorsOnTheAuthoritysHead(t *testing.T) {
	a := newAuthority(t)
	g := deliveredAgent(t, a, 10)
	before := a.head()
	if before != 10*recsPerWindow {
		t.Fatalf("head %d", before)
	}

	path := filepath.Join(t.TempDir(), "spool.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Path: path, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if moved, _ := sp.QuarantinedFile(); moved == "" || !sp.NeedsAnchor() {
		t.Fatalf("not quarantined: %q", moved)
	}
	g.spool = sp
	g.appendWindows(13, 15) // windows 10..12 were lost with the spool
	log := &logBuffer{}
	opts := g.options(a.URL)
	opts.Log = log.logger()
	if err := g.reporter(opts).Flush(context.Background()); err != nil {
		t.Fatal(err, log.String())
	}
	gap := 3 * units
	if got, want := a.head(), before+uint64(gap+2*recsPerWindow); got != want {
		t.Fatalf("authority head %d, want %d (gap %d records)\n%s", got, want, gap, log.String())
	}
	if c := a.counts(); c.Records != int64(12*recsPerWindow+gap) {
		t.Fatalf("authority holds %d records", c.Records)
	}
	if !strings.Contains(log.String(), "spool anchored") {
		t.Fatalf("no anchor log line:\n%s", log.String())
	}
}
