package spool_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

const node = "node-01"

var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

// testKey is fixed so that a re-executed child process signs with the same
// key as its parent.
func testKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "gpumeter spool test key seed....")
	return ed25519.NewKeyFromSeed(seed)
}

func lookup(id string) (ed25519.PublicKey, string, bool, error) {
	pub := testKey().Public().(ed25519.PublicKey)
	if id != signing.KeyID(pub) {
		return nil, "", false, fmt.Errorf("%s: %w", id, ledger.ErrUnknownKey)
	}
	return pub, node, false, nil
}

func newSealFunc(tb testing.TB) spool.SealFunc {
	tb.Helper()
	s, err := ledger.NewSealer(node, testKey(), func() time.Time { return t0 })
	if err != nil {
		tb.Fatal(err)
	}
	return func(first uint64, prev string, recs []protocol.Record) (ledger.Sealed, error) {
		return s.Seal(context.Background(), first, prev, recs)
	}
}

func openSpool(tb testing.TB, path string, opts spool.Options) *spool.Spool {
	tb.Helper()
	opts.Path = path
	s, err := spool.Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func tempPath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "spool.db") }

// windowRecs is one closed minute window i for units GPU-0..GPU-(units-1):
// tenant t<u> used 40 s of each unit, the rest was idle.
func windowRecs(i, units int) []protocol.Record {
	start := t0.Add(time.Duration(i) * time.Minute)
	var out []protocol.Record
	for u := range units {
		base := protocol.Record{
			Node: node, Provider: "p", WindowStart: start, WindowEnd: start.Add(time.Minute),
			GPUUUID: fmt.Sprintf("GPU-00000000-0000-4000-8000-%012d", u), ParentUUID: fmt.Sprintf("GPU-00000000-0000-4000-8000-%012d", u), Model: "H100",
			SliceNum: 1, SliceDen: 1, UtilizationPercent: -1, EnergyMillijoules: -1,
		}
		use := base
		use.Kind, use.Tenant, use.GPUMillis, use.Attribution = protocol.KindUsage, fmt.Sprintf("t%d", u), 40000, "cgroup"
		idle := base
		idle.Kind, idle.GPUMillis = protocol.KindIdle, 20000
		use.ID, idle.ID = use.ComputeID(), idle.ComputeID()
		out = append(out, use, idle)
	}
	return out
}

// sealAll seals every pending record with seal and returns the batches.
func sealAll(tb testing.TB, s *spool.Spool, seal spool.SealFunc, max int) []ledger.Sealed {
	tb.Helper()
	var out []ledger.Sealed
	for {
		b, ok, err := s.SealNext(context.Background(), seal, max)
		if err != nil {
			tb.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, b)
	}
}

// openAll verifies unacknowledged batches in order: contiguous from first,
// each chained to the one before. It returns their records.
func openAll(tb testing.TB, batches []spool.Batch, first uint64, prevHash string) []protocol.Record {
	tb.Helper()
	var recs []protocol.Record
	next := first
	for _, b := range batches {
		got, payload, err := ledger.Open(context.Background(), b.Envelope, lookup)
		if err != nil {
			tb.Fatalf("batch %d: %v", b.FirstSeq, err)
		}
		if got.FirstSeq != next || b.FirstSeq != next || got.LastSeq != b.LastSeq {
			tb.Fatalf("batch %d..%d (payload %d..%d), want first %d", b.FirstSeq, b.LastSeq, got.FirstSeq, got.LastSeq, next)
		}
		if got.PrevHash != prevHash {
			tb.Fatalf("batch %d prev_hash %q, want %q", b.FirstSeq, got.PrevHash, prevHash)
		}
		if protocol.Hash(payload) != b.Hash {
			tb.Fatalf("batch %d stored hash %s, payload hash %s", b.FirstSeq, b.Hash, protocol.Hash(payload))
		}
		prevHash, next = b.Hash, b.LastSeq+1
		recs = append(recs, got.Records...)
	}
	return recs
}

// sealAndOpen seals everything pending in s and answers the records of all
// its unacknowledged batches, checking the chain from seq 1.
func sealAndOpen(tb testing.TB, s *spool.Spool) []protocol.Record {
	tb.Helper()
	sealAll(tb, s, newSealFunc(tb), 0)
	un, err := s.Unacked(context.Background(), 0)
	if err != nil {
		tb.Fatal(err)
	}
	return openAll(tb, un, 1, "")
}

// appendWindows appends windows 0..n-1 of units GPUs to s, one append each
// and no checkpoint.
func appendWindows(tb testing.TB, s *spool.Spool, n, units int) {
	tb.Helper()
	for i := range n {
		if err := s.Append(context.Background(), windowRecs(i, units), nil); err != nil {
			tb.Fatalf("append window %d: %v", i, err)
		}
	}
}
