package spool_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

type totalKey struct {
	unit   string
	kind   protocol.Kind
	tenant string
	gap    string
}

func totals(recs []protocol.Record) (ms, energy map[totalKey]int64) {
	ms, energy = map[totalKey]int64{}, map[totalKey]int64{}
	for _, r := range recs {
		k := totalKey{r.GPUUUID, r.Kind, r.Tenant, r.GapReason}
		ms[k] += r.GPUMillis
		if r.EnergyMillijoules >= 0 {
			energy[k] += r.EnergyMillijoules
		}
	}
	return ms, energy
}

// checkInvariants: per (unit, window) the records sum to the window; a
// unit's windows do not overlap; ids are ComputeID and unique.
func checkInvariants(t *testing.T, recs []protocol.Record) {
	t.Helper()
	type win struct {
		unit       string
		start, end int64
	}
	sums := map[win]int64{}
	ids := map[string]bool{}
	for _, r := range recs {
		sums[win{r.GPUUUID, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()}] += r.GPUMillis
		if r.ID != r.ComputeID() {
			t.Fatalf("record %+v: id is not ComputeID", r)
		}
		if ids[r.ID] {
			t.Fatalf("duplicate id %s (%+v)", r.ID, r)
		}
		ids[r.ID] = true
	}
	wins := make([]win, 0, len(sums))
	for w, ms := range sums {
		if ms != w.end-w.start {
			t.Fatalf("unit %s window [%d,%d): records sum to %d ms, want %d", w.unit, w.start, w.end, ms, w.end-w.start)
		}
		wins = append(wins, w)
	}
	slices.SortFunc(wins, func(a, b win) int { return cmp.Or(cmp.Compare(a.unit, b.unit), cmp.Compare(a.start, b.start)) })
	for i := 1; i < len(wins); i++ {
		if wins[i].unit == wins[i-1].unit && wins[i].start < wins[i-1].end {
			t.Fatalf("unit %s: windows [%d,%d) and [%d,%d) overlap", wins[i].unit,
				wins[i-1].start, wins[i-1].end, wins[i].start, wins[i].end)
		}
	}
}

// checkTotals: every (unit, kind, tenant, reason) keeps its milliseconds and
// known energy exactly, except device_absent gaps, which may only grow.
func checkTotals(t *testing.T, in, out []protocol.Record) {
	t.Helper()
	inMs, inE := totals(in)
	outMs, outE := totals(out)
	for k, v := range outMs {
		if _, ok := inMs[k]; !ok && k.gap != protocol.GapDeviceAbsent {
			t.Fatalf("%+v: %d ms out of nothing", k, v)
		}
	}
	for k, v := range inMs {
		if k.gap == protocol.GapDeviceAbsent {
			if outMs[k] < v {
				t.Fatalf("%+v: %d ms in, %d out", k, v, outMs[k])
			}
			continue
		}
		if outMs[k] != v || outE[k] != inE[k] {
			t.Fatalf("%+v: in %d ms %d mJ, out %d ms %d mJ", k, v, inE[k], outMs[k], outE[k])
		}
	}
	tenants := func(m map[totalKey]int64) map[string]int64 {
		o := map[string]int64{}
		for k, v := range m {
			if k.kind == protocol.KindUsage {
				o[k.tenant] += v
			}
		}
		return o
	}
	if a, b := fmt.Sprint(tenants(inMs)), fmt.Sprint(tenants(outMs)); a != b {
		t.Fatalf("per-tenant usage in %s, out %s", a, b)
	}
}

func TestMergeRecordsProperty(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			w := []time.Duration{time.Second, time.Minute, 7 * time.Second}[seed%3]
			start := t0.Add(time.Duration(rng.IntN(3_600_000)) * time.Millisecond)
			var in []protocol.Record
			for _, win := range spool.RandomWindows(rng, node, start, 1+rng.IntN(120), 1+rng.IntN(4), w) {
				in = append(in, win...)
			}
			width := []time.Duration{10 * time.Second, time.Minute, time.Hour}[rng.IntN(3)]
			out := spool.MergeRecords(in, width)
			checkInvariants(t, in)
			checkInvariants(t, out)
			checkTotals(t, in, out)
			if len(out) > len(in)+len(in)/2+4 {
				t.Fatalf("merging %d records gave %d", len(in), len(out))
			}
		})
	}
}

func TestMergeRecordFields(t *testing.T) {
	mk := func(minute int, kind protocol.Kind, tenant string, ms int64, util int, mj int64, attr string) protocol.Record {
		s := t0.Add(time.Duration(minute) * time.Minute)
		r := protocol.Record{Node: node, GPUUUID: "GPU-00000000-0000-4000-8000-000000000000", ParentUUID: "GPU-00000000-0000-4000-8000-000000000000", Model: "H100", WindowStart: s, WindowEnd: s.Add(time.Minute),
			Kind: kind, Tenant: tenant, GPUMillis: ms, UtilizationPercent: util, EnergyMillijoules: mj, Attribution: attr}
		r.ID = r.ComputeID()
		return r
	}
	in := []protocol.Record{
		mk(0, protocol.KindUsage, "a", 45000, 80, 100, "user"), mk(0, protocol.KindIdle, "", 15000, 0, 5, ""),
		// minute 1: no records for the unit (absent).
		mk(2, protocol.KindUsage, "a", 15000, 21, -1, "cgroup"), mk(2, protocol.KindUsage, "a", 0, -1, -1, "cgroup"),
		mk(2, protocol.KindIdle, "", 45000, -1, -1, ""),
	}
	out := spool.MergeRecords(in, time.Hour)
	want := []struct {
		kind         protocol.Kind
		tenant, gap  string
		ms           int64
		util         int
		mj           int64
		attr         string
		start, endMs int64
	}{
		{protocol.KindUsage, "a", "", 60000, 65, 100, "user", 0, 180000}, // (80*45+21*15)/60 = 65.25
		{protocol.KindIdle, "", "", 60000, 0, 5, "", 0, 180000},
		{protocol.KindGap, "", protocol.GapDeviceAbsent, 60000, -1, -1, "", 0, 180000},
	}
	if len(out) != len(want) {
		t.Fatalf("got %d records: %+v", len(out), out)
	}
	for i, w := range want {
		r := out[i]
		if r.Kind != w.kind || r.Tenant != w.tenant || r.GapReason != w.gap || r.GPUMillis != w.ms ||
			r.UtilizationPercent != w.util || r.EnergyMillijoules != w.mj || r.Attribution != w.attr ||
			r.WindowStart.Sub(t0).Milliseconds() != w.start || r.WindowEnd.Sub(t0).Milliseconds() != w.endMs {
			t.Fatalf("record %d = %+v, want %+v", i, r, w)
		}
	}
}

// TestCapMerges appends random windows under a cap small enough to force
// merging and checks what comes out of the spool against what went in.
// With inventories, inventory records are appended between windows:
// merging under the cap keeps every one of them exactly and in its place.
func TestCapMerges(t *testing.T) {
	tests := []struct {
		name        string
		seeds       uint64
		stream      uint64 // the PCG stream of the case's random numbers
		maxBytes    int64
		inventories bool
	}{
		{name: "windows", seeds: 4, stream: 11, maxBytes: 200 << 10},
		// Each inventory splits its merge bucket in two: a little more
		// room for the three of them.
		{name: "with inventories", seeds: 3, stream: 13, maxBytes: 256 << 10, inventories: true},
	}
	for _, tc := range tests {
		for seed := range tc.seeds {
			t.Run(fmt.Sprint(tc.name, "/", seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, tc.stream))
				s := openSpool(t, tempPath(t), spool.Options{MaxBytes: tc.maxBytes, MergeWindow: 30 * time.Minute})
				windows := spool.RandomWindows(rng, node, t0.Add(1234*time.Millisecond), 240, 4, time.Minute)
				if !tc.inventories {
					stored := appendOverCap(t, s, rng, tc.maxBytes, windows, nil)
					out := sealAndOpen(t, s)
					checkInvariants(t, out)
					checkTotals(t, stored, out)
					return
				}
				var invs []protocol.Record
				at := map[int]bool{rng.IntN(80): true, 80 + rng.IntN(80): true, 160 + rng.IntN(80): true}
				stored := appendOverCap(t, s, rng, tc.maxBytes, windows, func(i int) []protocol.Record {
					if !at[i] {
						return nil
					}
					inv := inventoryAt(windows[i][0].WindowStart, fmt.Sprint("build-", i))
					invs = append(invs, inv)
					return []protocol.Record{inv}
				})
				out := sealAndOpen(t, s)
				for i := range out {
					out[i].Seq = 0
				}
				checkInventoryPlaces(t, invs, out)
				checkInvariants(t, withoutInventories(out))
				checkTotals(t, withoutInventories(stored), withoutInventories(out))
			})
		}
	}
}

// appendOverCap appends windows to s in runs of 1 to 5, each run's records
// preceded window by window by what before(i) returns (before may be nil),
// and returns everything appended. After each append s must be within
// maxBytes; now and then it seals a batch, so that batches and merged
// entries mix; at the end the cap must have forced merging.
func appendOverCap(t *testing.T, s *spool.Spool, rng *rand.Rand, maxBytes int64, windows [][]protocol.Record, before func(i int) []protocol.Record) []protocol.Record {
	t.Helper()
	ctx := context.Background()
	var stored []protocol.Record
	for i := 0; i < len(windows); {
		n := min(1+rng.IntN(5), len(windows)-i)
		var recs []protocol.Record
		for k, w := range windows[i : i+n] {
			if before != nil {
				recs = append(recs, before(i+k)...)
			}
			recs = append(recs, w...)
		}
		i += n
		if err := s.Append(ctx, recs, []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		stored = append(stored, recs...)
		if st := s.Stats(); st.PendingBytes+st.UnackedBytes > maxBytes || st.MaxBytes != maxBytes {
			t.Fatalf("after append %d: %d bytes stored, cap %d (Stats says %d)", i, st.PendingBytes+st.UnackedBytes, maxBytes, st.MaxBytes)
		}
		if rng.IntN(40) == 0 {
			if _, _, err := s.SealNext(ctx, newSealFunc(t), 50); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := s.Stats().PendingRecords; got >= int64(len(stored))*2/3 {
		t.Fatalf("%d records pending of %d appended: the cap did not force merging", got, len(stored))
	}
	return stored
}

func TestErrFull(t *testing.T) {
	ctx := context.Background()
	seal := newSealFunc(t)
	t.Run("one append over the cap", func(t *testing.T) {
		s := openSpool(t, tempPath(t), spool.Options{MaxBytes: 2000})
		if err := s.Append(ctx, windowRecs(0, 1), []byte("cp-0")); err != nil {
			t.Fatal(err)
		}
		before := s.Stats()
		err := s.Append(ctx, windowRecs(1, 20), []byte("cp-1"))
		if !errors.Is(err, spool.ErrFull) {
			t.Fatalf("err = %v, want ErrFull", err)
		}
		if cp, _ := s.Checkpoint(); string(cp) != "cp-0" {
			t.Fatalf("checkpoint advanced to %q by a refused append", cp)
		}
		if after := s.Stats(); after.PendingRecords != before.PendingRecords || after.PendingBytes != before.PendingBytes {
			t.Fatalf("refused append changed the spool: %+v -> %+v", before, after)
		}
	})
	t.Run("unacknowledged batches fill the cap until acked", func(t *testing.T) {
		s := openSpool(t, tempPath(t), spool.Options{MaxBytes: 8000})
		for i := 0; ; i++ {
			err := s.Append(ctx, windowRecs(i, 1), []byte(fmt.Sprint(i)))
			if errors.Is(err, spool.ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sealAll(t, s, seal, 0) // nothing pending to merge: batches are never merged
			if i > 100 {
				t.Fatal("never full")
			}
		}
		_, sealed, _ := s.Head()
		if err := s.Ack(ctx, sealed); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, windowRecs(1000, 1), nil); err != nil {
			t.Fatalf("append after ack freed the spool: %v", err)
		}
	})
}
