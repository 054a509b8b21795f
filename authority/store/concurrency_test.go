package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// Two Stores opened on one database are two authority processes: each has
// its own pool, and only the database orders their writes.

// race runs fns at once (released together) and waits for them.
func race(fns ...func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f()
		}()
	}
	close(start)
	wg.Wait()
}

// TestConcurrentIngestTwoStores: several senders per node post the node's
// whole chain, in order, through two Stores at once. Every batch is stored
// exactly once, every other answer is a duplicate, none is refused, and the
// heads end at the chains' ends.
func TestConcurrentIngestTwoStores(t *testing.T) {
	eachStorePair(t, func(t *testing.T, ctx context.Context, stores []*Store) {
		const (
			nodes   = 3
			batches = 8
			perB    = 4
			senders = 4
		)
		chains := make([][]Submission, nodes)
		for n := range nodes {
			node, gpu := fmt.Sprintf("n%d", n), fmt.Sprintf("GPU-00000000-0000-4000-8000-%012d", n)
			k := pubKey(t)
			if err := stores[n%2].RegisterNode(ctx, Registration{ID: node, Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", []string{gpu}...)}, t0); err != nil {
				t.Fatal(err)
			}
			prev := ""
			for b := range batches {
				recs := make([]protocol.Record, perB)
				for i := range recs {
					m := b*perB + i
					recs[i] = win(gpu, m*60, m*60+60, "t", 60000)
					recs[i].ParentUUID = gpu
				}
				sub := batchOf(node, uint64(b*perB+1), prev, signing.KeyID(k), recs...)
				chains[n] = append(chains[n], sub)
				prev = sub.Hash
			}
		}
		var mu sync.Mutex
		stored := map[string]int{} // node/first_seq -> times stored
		var fns []func()
		for n := range nodes {
			for j := range senders {
				fns = append(fns, func() {
					for b, sub := range chains[n] {
						res, err := stores[(j+b)%2].Ingest(ctx, sub)
						if err != nil {
							t.Errorf("node %d batch %d via store %d: %v", n, b, (j+b)%2, err)
							return
						}
						mu.Lock()
						if !res.Duplicate {
							stored[fmt.Sprintf("n%d/%d", n, sub.Batch.FirstSeq)]++
						}
						mu.Unlock()
					}
				})
			}
		}
		race(fns...)
		for n := range nodes {
			for _, sub := range chains[n] {
				if k := fmt.Sprintf("n%d/%d", n, sub.Batch.FirstSeq); stored[k] != 1 {
					t.Errorf("batch %s stored %d times, want 1", k, stored[k])
				}
			}
			node, err := stores[1].Node(ctx, fmt.Sprintf("n%d", n))
			last := chains[n][batches-1]
			if err != nil || node.HeadSeq != last.Batch.LastSeq || node.HeadHash != last.Hash || node.Forked {
				t.Errorf("node n%d = %+v, %v; want head %d %s", n, node, err, last.Batch.LastSeq, last.Hash)
			}
		}
		c, err := stores[0].Count(ctx)
		if err != nil || c.Batches != nodes*batches || c.Records != nodes*batches*perB || c.UnitWindows != nodes*batches*perB {
			t.Errorf("counts %+v, %v; want %d batches, %d records and windows", c, err, nodes*batches, nodes*batches*perB)
		}
	})
}

// TestConcurrentSharedUnit: two nodes name the same unregistered unit (a
// MIG UUID) with overlapping windows at once, through two Stores. Exactly
// one may be stored: the unit's windows must never overlap or exceed wall
// time, whichever interleaving the database picks.
func TestConcurrentSharedUnit(t *testing.T) {
	eachStorePair(t, func(t *testing.T, ctx context.Context, stores []*Store) {
		type node struct {
			id, key, prev string
			next          uint64
		}
		const rounds = 8
		ns := []*node{{id: "n1", next: 1}, {id: "n2", next: 1}}
		// A parent GPU per node and round: the rounds' windows would cross
		// on one physical GPU, which the GPU-time rule refuses on its own.
		parent := func(n, r int) string { return fmt.Sprintf("GPU-00000000-0000-4000-800%d-%012d", n, r) }
		for i, n := range ns {
			k := pubKey(t)
			n.key = signing.KeyID(k)
			var gpus []string
			for r := range rounds {
				gpus = append(gpus, parent(i, r))
			}
			if err := stores[0].RegisterNode(ctx, Registration{ID: n.id, Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", gpus...)}, t0); err != nil {
				t.Fatal(err)
			}
		}
		for r := range rounds {
			unit := fmt.Sprintf("MIG-00000000-0000-4000-a000-%012d", r)
			// Even rounds: distinct overlapping windows; odd: one window,
			// 40 s each, 80 s in a minute together.
			windows := [][2]int{{0, 60}, {30, 90}}
			if r%2 == 1 {
				windows[1] = windows[0]
			}
			subs := make([]Submission, 2)
			for i, n := range ns {
				rec := win(unit, windows[i][0], windows[i][1], "t", 40000)
				rec.ParentUUID = parent(i, r)
				subs[i] = batchOf(n.id, n.next, n.prev, n.key, rec)
			}
			errs := make([]error, 2)
			race(func() { _, errs[0] = stores[0].Ingest(ctx, subs[0]) },
				func() { _, errs[1] = stores[1].Ingest(ctx, subs[1]) })
			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
					ns[i].next, ns[i].prev = subs[i].Batch.LastSeq+1, subs[i].Hash
				case !errors.Is(err, ErrOverWallTime):
					t.Errorf("round %d node %s: %v", r, ns[i].id, err)
				}
			}
			if ok != 1 {
				t.Errorf("round %d: %d of 2 overlapping batches stored, want 1 (%v)", r, ok, errs)
			}
		}
		var n int
		err := stores[0].queryRow(ctx, `SELECT COUNT(*) FROM unit_windows WHERE total_ms > window_end_ms - window_start_ms`).Scan(&n)
		if err != nil || n != 0 {
			t.Errorf("%d unit windows over wall time, %v", n, err)
		}
	})
}

// TestConcurrentRegistry: registrations and revocations racing through two
// Stores end as the checks say they would serialized: one wins, the other
// gets the registry's error (never a deadlock or a raw constraint error),
// and a revocation time never moves.
func TestConcurrentRegistry(t *testing.T) {
	eachStorePair(t, func(t *testing.T, ctx context.Context, stores []*Store) {
		a, b := stores[0], stores[1]
		oneWins := func(what string, want error, errs ...error) {
			t.Helper()
			failed := 0
			for _, err := range errs {
				if err != nil {
					failed++
					if !errors.Is(err, want) {
						t.Errorf("%s: %v, want %v", what, err, want)
					}
				}
			}
			if failed != len(errs)-1 {
				t.Errorf("%s: %d of %d failed, want all but one (%v)", what, failed, len(errs), errs)
			}
		}
		for r := range 5 {
			g1, g2 := fmt.Sprintf("GPU-00000000-0000-4000-8001-%012d", r), fmt.Sprintf("GPU-00000000-0000-4000-8002-%012d", r)
			var e1, e2 error
			race(func() {
				e1 = a.RegisterNode(ctx, Registration{ID: fmt.Sprintf("a%d", r), Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", g1, g2)}, t0)
			},
				func() {
					e2 = b.RegisterNode(ctx, Registration{ID: fmt.Sprintf("b%d", r), Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", g2, g1)}, t0)
				})
			oneWins(fmt.Sprintf("round %d: same GPUs, other order", r), ErrGPUClaimed, e1, e2)

			id := fmt.Sprintf("same-%d", r)
			race(func() {
				e1 = a.RegisterNode(ctx, Registration{ID: id, Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", fmt.Sprintf("GPU-00000000-0000-4000-8003-%012d", r))}, t0)
			},
				func() {
					e2 = b.RegisterNode(ctx, Registration{ID: id, Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", fmt.Sprintf("GPU-00000000-0000-4000-8004-%012d", r))}, t0)
				})
			oneWins(fmt.Sprintf("round %d: same node id", r), ErrNodeExists, e1, e2)

			k := pubKey(t)
			if err := a.RegisterNode(ctx, Registration{ID: fmt.Sprintf("k%d", r), Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", fmt.Sprintf("GPU-00000000-0000-4000-8005-%012d", r))}, t0); err != nil {
				t.Fatal(err)
			}
			at := []time.Time{t0.Add(time.Minute), t0.Add(2 * time.Minute)}
			race(func() { e1 = a.RevokeKey(ctx, signing.KeyID(k), at[0]) },
				func() { e2 = b.RevokeKey(ctx, signing.KeyID(k), at[1]) })
			oneWins(fmt.Sprintf("round %d: revoke", r), ErrKeyRevoked, e1, e2)
			got, err := a.Key(ctx, signing.KeyID(k))
			winner := at[0]
			if e1 != nil {
				winner = at[1]
			}
			if err != nil || !got.RevokedAt.Equal(winner) {
				t.Errorf("round %d: revoked at %v, %v; want the winner's %v", r, got.RevokedAt, err, winner)
			}
		}
	})
}
