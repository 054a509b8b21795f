package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

var pubKey = testutil.NewPublicKey

func TestOpenTwiceAppliesMigrationsOnce(t *testing.T) {
	eachSource(t, func(t *testing.T, driver string, source func(t *testing.T) string) {
		ctx := context.Background()
		src := source(t)
		s := openSource(t, driver, src)
		if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000001"}...)}, t0); err != nil {
			t.Fatal(err)
		}
		s2 := openSource(t, driver, src)
		var n int
		if err := s2.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations)-1 {
			t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(migrations)-1)
		}
		if _, err := s2.Node(ctx, "n1"); err != nil {
			t.Fatalf("data lost on reopen: %v", err)
		}
		if driver == DriverSQLite {
			var mode string
			if err := s2.queryRow(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode = %q, %v; want wal", mode, err)
			}
		}
	})
}

// TestConcurrentOpenMigratesOnce: processes starting at once on a new
// database apply each migration once and all start.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	eachSource(t, func(t *testing.T, driver string, source func(t *testing.T) string) {
		src := source(t)
		const n = 4
		stores := make([]*Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stores[i], errs[i] = Open(context.Background(), driver, src)
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Errorf("open %d: %v", i, errs[i])
				continue
			}
			t.Cleanup(func() { _ = stores[i].Close() })
		}
		if t.Failed() {
			return
		}
		var rows, versions int
		err := stores[0].queryRow(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions)
		if err != nil || rows != len(migrations)-1 || versions != rows {
			t.Fatalf("schema_migrations: %d rows, %d versions, %v; want %d of each", rows, versions, err, len(migrations)-1)
		}
	})
}

func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct{ name, driver, source string }{
		{"unknown driver", "mysql", "x"},
		{"in-memory", DriverSQLite, ":memory:"},
		{"no path", DriverSQLite, ""},
		{"postgres DSN that does not parse", DriverPostgres, "postgres://u:pw@host:notaport/db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Open(context.Background(), tc.driver, tc.source); err == nil {
				_ = s.Close()
				t.Fatal("opened")
			}
		})
	}
}

// TestPostgresPasswordNeverShown: neither errors nor the store's name
// (which the authority logs) carry the password, in any form the DSN
// spells it.
func TestPostgresPasswordNeverShown(t *testing.T) {
	const secret = "s3cret-Pa55"
	tests := []struct{ name, dsn string }{
		{"URL, bad port", "postgres://gpumeter:" + secret + "@127.0.0.1:notaport/db"},
		{"URL, nothing listening", "postgres://gpumeter:" + secret + "@127.0.0.1:1/db?connect_timeout=5"},
		{"URL, password as a parameter", "postgres://gpumeter@127.0.0.1:1/db?password=" + secret + "&connect_timeout=5"},
		{"URL, escaped password", "postgres://gpumeter:" + url.PathEscape(secret+"/@") + "@127.0.0.1:1/db?connect_timeout=5"},
		{"key=value", "host=127.0.0.1 port=1 user=gpumeter password='" + secret + "' dbname=db connect_timeout=5"},
		{"key=value, bad port", "host=127.0.0.1 port=x user=gpumeter password=" + secret + " dbname=db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), DriverPostgres, tc.dsn)
			if err == nil {
				_ = s.Close()
				t.Fatal("opened")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
	t.Run("store name", func(t *testing.T) {
		u, err := url.Parse(testenv.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		s := openSource(t, DriverPostgres, u.String())
		pw, _ := u.User.Password()
		want := "postgres://" + u.User.Username() + "@" + u.Host + u.Path
		if name := s.String(); name != want || (pw != "" && strings.Contains(name, ":"+pw+"@")) {
			t.Errorf("store name %q, want %q", name, want)
		}
	})
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
	eachDriver(t, testRegistry)
}

func testRegistry(t *testing.T, open func(t *testing.T) *Store) {
	ctx := context.Background()
	s := open(t)
	k1 := pubKey(t)
	if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k1, GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000001", "GPU-00000000-0000-4000-8000-000000000002"}...)}, t0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"node id again", func() error {
			return s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000009"}...)}, t0)
		}, ErrNodeExists},
		{"GPU of another node", func() error {
			return s.RegisterNode(ctx, Registration{ID: "n2", Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000003", "GPU-00000000-0000-4000-8000-000000000002"}...)}, t0)
		}, ErrGPUClaimed},
		{"key of another node", func() error {
			return s.RegisterNode(ctx, Registration{ID: "n3", Provider: "p", Key: k1, GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000004"}...)}, t0)
		}, ErrKeyExists},
		{"GPU listed twice", func() error {
			return s.RegisterNode(ctx, Registration{ID: "n4", Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000005", "GPU-00000000-0000-4000-8000-000000000005"}...)}, t0)
		}, nil},
		{"rotate on unknown node", func() error { _, err := s.AddKey(ctx, "nobody", pubKey(t), time.Time{}, t0); return err }, ErrNodeNotFound},
		{"revoke unknown key", func() error { return s.RevokeKey(ctx, "ed25519:0000000000000000", t0) }, ErrKeyNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A refused registration leaves nothing behind (one transaction).
	for _, id := range []string{"n2", "n3", "n4"} {
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
func batch(first uint64, prev, keyID string, recs ...protocol.Record) Submission {
	for i := range recs {
		recs[i].Seq = first + uint64(i)
		recs[i].ID = recs[i].ComputeID()
	}
	b := protocol.Batch{Node: "n1", KeyID: keyID, FirstSeq: first, LastSeq: first + uint64(len(recs)) - 1, PrevHash: prev, Records: recs}
	h := protocol.Hash([]byte(fmt.Sprint(prev, first, recs[0].ID)))
	return Submission{Batch: b, Hash: h, Envelope: []byte("env"), Received: t0}
}

func win(unit string, startS, endS int, tenant string, ms int64) protocol.Record {
	r := protocol.Record{Node: "n1", Provider: "p", Kind: protocol.KindIdle, Tenant: tenant, GPUUUID: unit, ParentUUID: "GPU-00000000-0000-4000-8000-000000000001",
		WindowStart: t0.Add(time.Duration(startS) * time.Second), WindowEnd: t0.Add(time.Duration(endS) * time.Second), GPUMillis: ms}
	if tenant != "" {
		r.Kind = protocol.KindUsage
	}
	return r
}

// TestWallTimeRule checks the package doc's rule directly on the store.
func TestWallTimeRule(t *testing.T) {
	tests := []struct {
		name   string
		stored []protocol.Record
		next   []protocol.Record
		want   error
	}{
		{"adjacent windows", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 60000)}, []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 60000)}, nil},
		{"same window fills up exactly", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 30000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "b", 20000), win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "", 10000)}, nil},
		{"same window over by 1 ms", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 30000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "b", 30001)}, ErrOverWallTime},
		{"partial window inside a stored one", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 1000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 10, 20, "b", 1000)}, ErrOverWallTime},
		{"window spanning a stored one", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "a", 1000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 180, "b", 1000)}, ErrOverWallTime},
		{"0 ms window partly overlapping a stored one", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 1000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 10, 70, "b", 0)}, ErrOverWallTime},
		{"stored windows before and after, new one between", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 1000), win("GPU-00000000-0000-4000-8000-000000000001", 120, 180, "a", 1000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 60, 120, "b", 60000)}, nil},
		{"new window reaching into the next stored one", []protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 1000), win("GPU-00000000-0000-4000-8000-000000000001", 120, 180, "a", 1000)},
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 60, 121, "b", 1000)}, ErrOverWallTime},
		{"overlap within one batch", nil,
			[]protocol.Record{win("GPU-00000000-0000-4000-8000-000000000001", 0, 60, "a", 1000), win("GPU-00000000-0000-4000-8000-000000000001", 30, 90, "b", 1000)}, ErrOverWallTime},
		{"other units are independent", []protocol.Record{win("MIG-00000000-0000-4000-9000-000000000001", 0, 60, "a", 60000)},
			[]protocol.Record{win("MIG-00000000-0000-4000-9000-000000000002", 0, 60, "a", 60000), win("MIG-00000000-0000-4000-9000-000000000002", 60, 120, "a", 1)}, nil},
	}
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				testWallTime(t, open(t), tc.stored, tc.next, tc.want)
			})
		}
	})
}

func testWallTime(t *testing.T, s *Store, stored, next []protocol.Record, want error) {
	ctx := context.Background()
	k1 := pubKey(t)
	if err := s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k1, GPUs: GPUsOf("H100-SXM5-80GB", []string{"GPU-00000000-0000-4000-8000-000000000001"}...)}, t0); err != nil {
		t.Fatal(err)
	}
	prev := ""
	if stored != nil {
		sub := batch(1, "", signing.KeyID(k1), stored...)
		if _, err := s.Ingest(ctx, sub); err != nil {
			t.Fatalf("stored batch: %v", err)
		}
		prev = sub.Hash
	}
	before, err := s.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Ingest(ctx, batch(uint64(len(stored))+1, prev, signing.KeyID(k1), next...))
	if !errors.Is(err, want) && !(want == nil && err == nil) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	after, err := s.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want != nil && after != before {
		t.Errorf("rejected batch changed rows: %+v -> %+v", before, after)
	}
	if want == nil && after.Records != before.Records+int64(len(next)) {
		t.Errorf("accepted batch: records %d -> %d", before.Records, after.Records)
	}
}
