package store

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestStatementAndClaimCoverage: a claim lists the coverage of all the
// provider's GPUs, a statement that of the GPUs the entity's usage ran on.
func TestStatementAndClaimCoverage(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := context.Background()
		s := open(t)
		billSetup(t, s)
		n := newBillNode(t, s, "n1")
		for i := 1; i <= 4; i++ {
			setRegistered(t, s, n.gpu(i), bt.Add(-time.Hour))
		}
		n.ingest(n.hour(1, bt, "acme"), n.hour(2, bt.Add(time.Hour), "globex"))
		addGPUWindows(t, s, "n1", n.gpu(1), [2]time.Time{bt, bt.Add(time.Hour)})
		addGPUWindows(t, s, "n1", n.gpu(2), [2]time.Time{bt.Add(time.Hour), bt.Add(2 * time.Hour)})
		from, to := bt, bt.Add(2*time.Hour)

		st, err := s.Statement(ctx, "E1", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Coverage) != 1 {
			t.Fatalf("statement coverage %+v, want GPU 1's only (acme's usage ran there)", st.Coverage)
		}
		g := st.Coverage[0]
		if g.GPU != n.gpu(1) || g.ExpectedMillis != 7_200_000 || g.CoveredMillis != 3_600_000 || len(g.Holes) != 1 ||
			!g.Holes[0].From.Equal(bt.Add(time.Hour)) || !g.Holes[0].To.Equal(to) {
			t.Errorf("statement coverage %+v, want GPU 1 covered [0, 1h) of 2h", g)
		}

		c, err := s.Claim(ctx, "p1", from, to)
		if err != nil {
			t.Fatal(err)
		}
		var gpus []string
		var covered int64
		for _, g := range c.Coverage {
			gpus = append(gpus, g.GPU)
			covered += g.CoveredMillis
		}
		if want := []string{n.gpu(1), n.gpu(2), n.gpu(3), n.gpu(4)}; !reflect.DeepEqual(gpus, want) || covered != 7_200_000 {
			t.Errorf("claim coverage of %v covering %d ms, want %v covering 2 h", gpus, covered, want)
		}
	})
}
