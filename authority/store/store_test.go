package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/record"
	"github.com/gpumeter/gpumeter/metering/signing"
)

var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.db")
	s, err := Open(context.Background(), DriverSQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func pubKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	p, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenTwiceAppliesMigrationsOnce(t *testing.T) {
	s, path := openTest(t)
	if err := s.RegisterNode(context.Background(), "n1", "p", pubKey(t), []string{"GPU-1"}, t0); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(context.Background(), DriverSQLite, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	var n int
	if err := s2.queryRow(context.Background(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations)-1 {
		t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(migrations)-1)
	}
	if _, err := s2.Node(context.Background(), "n1"); err != nil {
		t.Fatalf("data lost on reopen: %v", err)
	}
	var mode string
	if err := s2.queryRow(context.Background(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpenRefusesOtherDrivers(t *testing.T) {
	for _, tc := range []struct{ name, driver, path string }{
		{"postgres not wired", "postgres", "x"},
		{"in-memory", DriverSQLite, ":memory:"},
		{"no path", DriverSQLite, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(context.Background(), tc.driver, tc.path); err == nil {
				t.Fatal("opened")
			}
		})
	}
}

func TestRebind(t *testing.T) {
	d := dialect{dollar: true}
	if got := d.rebind(`SELECT a FROM t WHERE b = ? AND c IN (?, ?)`); got != `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)` {
		t.Errorf("rebind = %q", got)
	}
	if got := sqliteDialect.rebind(`x = ?`); got != `x = ?` {
		t.Errorf("sqlite rebind = %q", got)
	}
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	k1 := pubKey(t)
	if err := s.RegisterNode(ctx, "n1", "p", k1, []string{"GPU-1", "GPU-2"}, t0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"node id again", func() error { return s.RegisterNode(ctx, "n1", "p", pubKey(t), []string{"GPU-9"}, t0) }, ErrNodeExists},
		{"GPU of another node", func() error { return s.RegisterNode(ctx, "n2", "p", pubKey(t), []string{"GPU-3", "GPU-2"}, t0) }, ErrGPUClaimed},
		{"key of another node", func() error { return s.RegisterNode(ctx, "n3", "p", k1, []string{"GPU-4"}, t0) }, ErrKeyExists},
		{"rotate on unknown node", func() error { _, err := s.AddKey(ctx, "nobody", pubKey(t), t0); return err }, ErrNodeNotFound},
		{"revoke unknown key", func() error { return s.RevokeKey(ctx, "ed25519:0000000000000000", t0) }, ErrKeyNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A refused registration leaves nothing behind (one transaction).
	for _, id := range []string{"n2", "n3"} {
		if _, err := s.Node(ctx, id); !errors.Is(err, ErrNodeNotFound) {
			t.Errorf("node %s after refused registration: %v", id, err)
		}
	}
	id := signing.KeyID(k1)
	if err := s.RevokeKey(ctx, id, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, id, t0.Add(time.Hour)); !errors.Is(err, ErrKeyRevoked) {
		t.Errorf("second revoke: %v", err)
	}
	k, err := s.Key(ctx, id)
	if err != nil || !k.RevokedAsOf(t0) || k.RevokedAsOf(t0.Add(-time.Millisecond)) || k.Node != "n1" || !k.Public.Equal(k1) {
		t.Errorf("key = %+v, %v", k, err)
	}
}

// batch builds a batch of n1 from records (seqs assigned from first).
func batch(first uint64, prev, keyID string, recs ...record.Record) Submission {
	for i := range recs {
		recs[i].Seq = first + uint64(i)
		recs[i].ID = recs[i].ComputeID()
	}
	b := ledger.Batch{Node: "n1", KeyID: keyID, FirstSeq: first, LastSeq: first + uint64(len(recs)) - 1, PrevHash: prev, Records: recs}
	h := ledger.Hash([]byte(fmt.Sprint(prev, first, recs[0].ID)))
	return Submission{Batch: b, Hash: h, Envelope: []byte("env"), Received: t0}
}

func win(unit string, startS, endS int, tenant string, ms int64) record.Record {
	r := record.Record{Node: "n1", Provider: "p", Kind: record.KindIdle, Tenant: tenant, GPUUUID: unit, ParentUUID: "GPU-1",
		WindowStart: t0.Add(time.Duration(startS) * time.Second), WindowEnd: t0.Add(time.Duration(endS) * time.Second), GPUMillis: ms}
	if tenant != "" {
		r.Kind = record.KindUsage
	}
	return r
}

// TestWallTimeRule checks the package doc's rule directly on the store.
func TestWallTimeRule(t *testing.T) {
	tests := []struct {
		name   string
		stored []record.Record
		next   []record.Record
		want   error
	}{
		{"adjacent windows", []record.Record{win("GPU-1", 0, 60, "a", 60000)}, []record.Record{win("GPU-1", 60, 120, "a", 60000)}, nil},
		{"same window fills up exactly", []record.Record{win("GPU-1", 0, 60, "a", 30000)},
			[]record.Record{win("GPU-1", 0, 60, "b", 20000), win("GPU-1", 0, 60, "", 10000)}, nil},
		{"same window over by 1 ms", []record.Record{win("GPU-1", 0, 60, "a", 30000)},
			[]record.Record{win("GPU-1", 0, 60, "b", 30001)}, ErrOverWallTime},
		{"partial window inside a stored one", []record.Record{win("GPU-1", 0, 60, "a", 1000)},
			[]record.Record{win("GPU-1", 10, 20, "b", 1000)}, ErrOverWallTime},
		{"window spanning a stored one", []record.Record{win("GPU-1", 60, 120, "a", 1000)},
			[]record.Record{win("GPU-1", 0, 180, "b", 1000)}, ErrOverWallTime},
		{"overlap within one batch", nil,
			[]record.Record{win("GPU-1", 0, 60, "a", 1000), win("GPU-1", 30, 90, "b", 1000)}, ErrOverWallTime},
		{"other units are independent", []record.Record{win("MIG-1", 0, 60, "a", 60000)},
			[]record.Record{win("MIG-2", 0, 60, "a", 60000), win("MIG-2", 60, 120, "a", 1)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTest(t)
			k1 := pubKey(t)
			if err := s.RegisterNode(ctx, "n1", "p", k1, []string{"GPU-1"}, t0); err != nil {
				t.Fatal(err)
			}
			prev := ""
			if tc.stored != nil {
				sub := batch(1, "", signing.KeyID(k1), tc.stored...)
				if _, err := s.Ingest(ctx, sub); err != nil {
					t.Fatalf("stored batch: %v", err)
				}
				prev = sub.Hash
			}
			before, err := s.Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Ingest(ctx, batch(uint64(len(tc.stored))+1, prev, signing.KeyID(k1), tc.next...))
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			after, err := s.Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && after != before {
				t.Errorf("rejected batch changed rows: %+v -> %+v", before, after)
			}
			if tc.want == nil && after.Records != before.Records+int64(len(tc.next)) {
				t.Errorf("accepted batch: records %d -> %d", before.Records, after.Records)
			}
		})
	}
}
