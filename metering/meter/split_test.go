package meter

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestSplitIsExactPerWindow: random tenants, weights and sample times on
// one shared GPU. Every (unit, window) record is less than 1 ms from the
// tenant's exact share (Σ d·w/W over the window's held intervals, in
// math/big.Rat), and the tenants' records sum to the unit's busy time.
func TestSplitIsExactPerWindow(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x73706c6974))
			window := []time.Duration{time.Second, 5 * time.Second, time.Minute}[rng.IntN(3)]
			m, err := New(Options{Node: "n", Window: window, MaxHold: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			names := []string{"a", "b", "c", "zz", "acme", "globex", "m-1"}
			rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
			names = names[:2+rng.IntN(len(names)-1)]
			maxW := []int64{1, 3, 100, 1 << 40}[rng.IntN(4)]
			exact := map[refKey]*big.Rat{}
			pos := int64(rng.IntN(5000))
			var recs []protocol.Record
			for n := 10 + rng.IntN(200); n > 0; n-- {
				o := attribution.Observation{Unit: gpu("GPU-0", 50, device.Unknown), SplitRule: "utilization"}
				for _, tn := range names {
					if rng.IntN(4) > 0 {
						o.Shares = append(o.Shares, attribution.Share{Tenant: tn, Method: "user", Weight: 1 + rng.Int64N(maxW)})
					}
				}
				next := pos + 1 + int64(rng.IntN(3000))
				recs = append(recs, m.Observe(at(pos), []attribution.Observation{o})...)
				exactShares(exact, &o, pos, next, window.Milliseconds())
				pos = next
			}
			recs = append(recs, m.Stop(at(pos))...)
			checkRecords(t, recs, "n", window)
			// Keyed by the aligned window: the first and the last are partial.
			w := window.Milliseconds()
			got := map[refKey]int64{}
			for _, r := range recs {
				if r.Kind == protocol.KindUsage {
					ws := r.WindowStart.Sub(base).Milliseconds() / w * w
					got[refKey{ws, ws + w, r.GPUUUID, r.Kind, r.Tenant}] += r.GPUMillis
				}
			}
			compareReference(t, got, exact)
		})
	}
}

// exactShares adds o's exact usage on [from, to), split at window
// boundaries (base is on a minute, so offsets divisible by w are
// boundaries), to exact, keyed by the aligned window.
func exactShares(exact map[refKey]*big.Rat, o *attribution.Observation, from, to, w int64) {
	var sum int64
	for _, s := range o.Shares {
		sum += s.Weight
	}
	for s := from; s < to; {
		ws := s / w * w
		e := min(ws+w, to)
		for _, sh := range o.Shares {
			k := refKey{ws, ws + w, "GPU-0", protocol.KindUsage, sh.Tenant}
			if exact[k] == nil {
				exact[k] = new(big.Rat)
			}
			exact[k].Add(exact[k], new(big.Rat).Mul(big.NewRat(e-s, 1), big.NewRat(sh.Weight, sum)))
		}
		s = e
	}
}

// TestSplitTiesFavourNoName: three equal tenants share a GPU for 600 one-
// second windows. Each window's 1000 ms are 333⅓ ms each, so one tenant
// gets 334: which one must vary, about a third of the windows each, not go
// to the alphabetically first every time.
func TestSplitTiesFavourNoName(t *testing.T) {
	m, err := New(Options{Node: "n", Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const windows = 600
	var recs []protocol.Record
	for ms := int64(0); ms <= windows*1000; ms += 1000 {
		recs = append(recs, m.Observe(at(ms), obs(used(gpu("GPU-0", 100, device.Unknown), "c", "a", "b")))...)
	}
	favoured := map[string]int{}
	perWindow := map[int64]int64{}
	for _, r := range recs {
		perWindow[r.WindowStart.UnixMilli()] += r.GPUMillis
		switch r.GPUMillis {
		case 334:
			favoured[r.Tenant]++
		case 333:
		default:
			t.Errorf("%s %v: %d ms, want 333 or 334", r.Tenant, r.WindowStart, r.GPUMillis)
		}
	}
	if len(perWindow) != windows {
		t.Fatalf("%d windows, want %d", len(perWindow), windows)
	}
	for ws, ms := range perWindow {
		if ms != 1000 {
			t.Errorf("window %d: %d ms in all, want 1000", ws, ms)
		}
	}
	for _, tn := range []string{"a", "b", "c"} {
		// Expected 200 each; 150 is more than 4 standard deviations off.
		if favoured[tn] < 150 {
			t.Errorf("tenant %s got the odd millisecond in %d of %d windows (%v): biased", tn, favoured[tn], windows, favoured)
		}
	}
}

// TestFracMatchesBigRat: random sums of fractions below 1, with
// denominators from small (the word path) to near 2⁶³ (past it, the
// big.Rat path), give the same whole milliseconds and the same remainder
// as math/big, and compare as big.Rat compares them.
func TestFracMatchesBigRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 0x66726163))
	for round := range 2000 {
		var f, g frac
		want, wantG := new(big.Rat), new(big.Rat)
		var whole, wantWhole int64
		maxDen := []uint64{2, 7, 1000, 1 << 32, 1 << 62}[round%5]
		for range 1 + rng.IntN(40) {
			sum := 2 + rng.Uint64N(maxDen)
			rem := 1 + rng.Uint64N(sum-1)
			whole += f.add(rem, sum)
			want.Add(want, big.NewRat(0, 1).SetFrac(new(big.Int).SetUint64(rem), new(big.Int).SetUint64(sum)))
			if want.Cmp(big.NewRat(1, 1)) >= 0 {
				want.Sub(want, big.NewRat(1, 1))
				wantWhole++
			}
			gs := 2 + rng.Uint64N(maxDen)
			g.add(1+rng.Uint64N(gs-1), gs)
			wantG = g.rat()
		}
		if whole != wantWhole || f.rat().Cmp(want) != 0 {
			t.Fatalf("round %d: %d + %v, want %d + %v", round, whole, f.rat(), wantWhole, want)
		}
		if f.positive() != (want.Sign() > 0) {
			t.Fatalf("round %d: positive %v for %v", round, f.positive(), want)
		}
		if got, w := f.cmp(&g), want.Cmp(wantG); got != w {
			t.Fatalf("round %d: cmp(%v, %v) = %d, want %d", round, want, wantG, got, w)
		}
	}
}

// TestTieKeyIsFNV1a: the hand-written hash is hash/fnv's 64-bit FNV-1a
// over the bytes the records' order was defined by.
func TestTieKeyIsFNV1a(t *testing.T) {
	for _, c := range []struct {
		ws           int64
		uuid, tenant string
	}{{0, "", ""}, {1_700_000_000_000, "GPU-0", "acme"}, {-5, "MIG-x", "ÿ-tenant"}} {
		h := fnv.New64a()
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(c.ws))
		h.Write(b[:])
		h.Write([]byte(c.uuid))
		h.Write([]byte{0})
		h.Write([]byte(c.tenant))
		if got := tieKey(c.ws, c.uuid, c.tenant); got != h.Sum64() {
			t.Errorf("tieKey(%d, %q, %q) = %x, want %x", c.ws, c.uuid, c.tenant, got, h.Sum64())
		}
	}
}
