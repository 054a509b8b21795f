package meter

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestRandomSequencesMatchReference runs random observation sequences
// (gaps, losses, units coming and going, shared units, times going
// backwards, sparse stretches) and compares every record's milliseconds with
// an independent per-millisecond reference.
func TestRandomSequencesMatchReference(t *testing.T) {
	for seed := uint64(1); seed <= 400; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x6d65746572))
			sc := randomScenario(rng, false)
			m, err := New(Options{Node: "n", Window: sc.window, MaxHold: sc.hold})
			if err != nil {
				t.Fatal(err)
			}
			var recs []protocol.Record
			prev := map[TotalsKey]int64{}
			for i, s := range sc.steps {
				recs = append(recs, m.Observe(at(s.at), s.obs)...)
				if i%7 == 0 {
					cur := m.Totals()
					for k, v := range prev {
						if cur[k] < v {
							t.Fatalf("total %+v went down from %d to %d", k, v, cur[k])
						}
					}
					prev = cur
				}
			}
			recs = append(recs, m.Stop(at(sc.stop))...)
			checkRecords(t, recs, "n", sc.window)

			got := map[refKey]int64{}
			sums := map[TotalsKey]int64{}
			for _, r := range recs {
				label := r.Tenant + r.GapReason
				got[refKey{r.WindowStart.Sub(base).Milliseconds(), r.WindowEnd.Sub(base).Milliseconds(), r.GPUUUID, r.Kind, label}] += r.GPUMillis
				sums[TotalsKey{Tenant: r.Tenant, UnitUUID: r.GPUUUID, Kind: r.Kind, GapReason: r.GapReason}] += r.GPUMillis
			}
			compareReference(t, got, reference(sc))
			if got, most := energyOf(recs, "GPU-0"), energyBound(sc, "GPU-0"); got > most {
				t.Errorf("GPU-0 records hold %d mJ, the counter rose by at most %d mJ", got, most)
			}
			if tot := m.Totals(); !maps.Equal(tot, sums) {
				t.Errorf("Totals after Stop differ from the records:\n%v\n%v", tot, sums)
			}
			if t.Failed() {
				t.Logf("window %v hold %v stop %d steps %d", sc.window, sc.hold, sc.stop, len(sc.steps))
			}
		})
	}
}

type scenario struct {
	window, hold time.Duration
	steps        []step
	stop         int64
}

// randomScenario uses short windows so the per-ms reference stays cheap.
// keep0: GPU-0 is in every observation (lost at times, never absent).
func randomScenario(rng *rand.Rand, keep0 bool) scenario {
	windows := []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}
	sc := scenario{
		window: windows[rng.IntN(len(windows))],
		hold:   time.Duration(50+rng.IntN(1500)) * time.Millisecond,
	}
	units := []device.Unit{
		gpu("GPU-0", 0, 0), gpu("GPU-1", 0, device.Unknown),
		mig("MIG-a", "GPU-2"), mig("MIG-b", "GPU-2"), mig("MIG-c", "GPU-2"),
	}
	tenants := []string{"t1", "t2", "t3", "t4"}
	pos := int64(rng.IntN(10_000))
	var energy int64
	for n := 5 + rng.IntN(60); n > 0; n-- {
		var o []attribution.Observation
		for _, u := range units {
			if rng.IntN(100) < 20 && !(keep0 && u.UUID == "GPU-0") {
				continue // absent
			}
			if u.EnergyMillijoules != device.Unknown {
				energy += int64(rng.IntN(3000)) - 200 // sometimes backwards
				u.EnergyMillijoules = energy
			}
			if u.UtilizationPercent != device.Unknown {
				u.UtilizationPercent = rng.IntN(101)
			}
			if rng.IntN(100) < 10 {
				u = lost(u)
			}
			ob := attribution.Observation{Unit: u}
			for _, tn := range tenants {
				if rng.IntN(100) < 25 {
					ob.Shares = append(ob.Shares, attribution.Share{Tenant: tn, Method: "user", Weight: int64(1 + rng.IntN(7))})
				}
			}
			rng.Shuffle(len(ob.Shares), func(i, j int) { ob.Shares[i], ob.Shares[j] = ob.Shares[j], ob.Shares[i] })
			o = append(o, ob)
		}
		sc.steps = append(sc.steps, step{pos, o})
		switch r := rng.IntN(100); {
		case r < 5:
			pos -= int64(rng.IntN(2000)) // wall clock stepped back
		case r < 10:
			// same instant
		case r < 15:
			pos += int64(rng.IntN(4 * int(sc.window.Milliseconds()))) // sparse
		default:
			pos += int64(1 + rng.IntN(1200))
		}
	}
	last := int64(0)
	for _, s := range sc.steps {
		last = max(last, s.at)
	}
	sc.stop = last + 1 + int64(rng.IntN(3000))
	return sc
}

type refKey struct {
	start, end int64 // ms from base
	unit       string
	kind       protocol.Kind
	label      string // tenant or gap reason
}

// reference meters a scenario one millisecond at a time, straight from the
// rules in doc.go, sharing no code with the meter.
func reference(sc scenario) map[refKey]*big.Rat {
	var evs []refEvent
	for _, s := range sc.steps {
		p := s.at
		if len(evs) > 0 && p < evs[len(evs)-1].pos {
			p = evs[len(evs)-1].pos
		}
		evs = append(evs, refEvent{pos: p, obs: byUnit(s.obs)})
	}
	return refRecords(evs, nil, nil, sc.stop, sc.window, sc.hold)
}

// refEvent governs the timeline from pos until the next event: an
// observation, or (down) the agent being down, obs then naming the units
// the checkpoint knew.
type refEvent struct {
	pos  int64
	obs  map[string]attribution.Observation
	down bool
}

func byUnit(obs []attribution.Observation) map[string]attribution.Observation {
	m := map[string]attribution.Observation{}
	for _, o := range obs {
		m[o.Unit.UUID] = o
	}
	return m
}

// refRecords classifies every ms from the first event to stop: for each
// window (aligned, also ended at cuts: ms offsets from base) it finds the
// units the window knows and, per ms, the governing event. stopSeen names
// units a window ending at a cut also knows: those observed at the very
// position of the Stop that cut it.
func refRecords(evs []refEvent, cuts []int64, stopSeen map[int64][]string, stop int64, window, hold time.Duration) map[refKey]*big.Rat {
	w, h := window.Milliseconds(), hold.Milliseconds()
	abs := func(off int64) int64 { return base.UnixMilli() + off }
	out := map[refKey]*big.Rat{}
	ints := map[refKey]int64{} // per-ms counts, added to out at the end
	add := func(k refKey, ms *big.Rat) {
		if out[k] == nil {
			out[k] = new(big.Rat)
		}
		out[k].Add(out[k], ms)
	}
	for ws := evs[0].pos; ws < stop; {
		we := min((abs(ws)/w+1)*w-base.UnixMilli(), stop) // base and offsets are positive
		for _, c := range cuts {
			if c > ws && c < we {
				we = c
			}
		}
		gov := 0 // the last event at or before ms
		for gov+1 < len(evs) && evs[gov+1].pos <= ws {
			gov++
		}
		known := map[string]bool{}
		for u := range evs[gov].obs {
			known[u] = true
		}
		for _, o := range evs {
			if o.pos >= ws && o.pos < we {
				for u := range o.obs {
					known[u] = true
				}
			}
		}
		for _, u := range stopSeen[we] {
			known[u] = true
		}
		for u := range known {
			g := gov
			run, runGov := int64(0), -1
			flush := func() {
				if run > 0 {
					for tn, ms := range refSplit(run, evs[runGov].obs[u].Shares) {
						add(refKey{ws, we, u, protocol.KindUsage, tn}, ms)
					}
				}
				run, runGov = 0, -1
			}
			for ms := ws; ms < we; ms++ {
				for g+1 < len(evs) && evs[g+1].pos <= ms {
					g++
				}
				o, present := evs[g].obs[u]
				var kind protocol.Kind
				var label string
				switch {
				case evs[g].down && present:
					kind, label = protocol.KindGap, protocol.GapAgentDown
				case !present:
					kind, label = protocol.KindGap, protocol.GapDeviceAbsent
				case ms-evs[g].pos >= h:
					kind, label = protocol.KindGap, protocol.GapNoSample
				case o.Unit.Err != nil:
					kind, label = protocol.KindGap, protocol.GapDeviceLost
				case len(o.Shares) == 0:
					kind = protocol.KindIdle
				default:
					if runGov != g {
						flush()
					}
					run++
					runGov = g
					continue
				}
				flush()
				ints[refKey{ws, we, u, kind, label}]++
			}
			flush()
		}
		ws = we
	}
	for k, ms := range ints {
		add(k, big.NewRat(ms, 1))
	}
	return out
}

// refSplit gives each share's tenant its exact part of d ms: d·w/W.
func refSplit(d int64, shares []attribution.Share) map[string]*big.Rat {
	var total int64
	for _, s := range shares {
		total += s.Weight
	}
	out := map[string]*big.Rat{}
	for _, s := range shares {
		out[s.Tenant] = big.NewRat(d*s.Weight, total)
	}
	return out
}

// compareReference checks the meter's milliseconds against the reference:
// gaps and idle exactly; a tenant's usage less than 1 ms from its exact
// rational share; and each (window, unit)'s usage summing exactly to its
// busy time.
func compareReference(t *testing.T, got map[refKey]int64, want map[refKey]*big.Rat) {
	t.Helper()
	type wu struct {
		start, end int64
		unit       string
	}
	gotBusy, wantBusy := map[wu]int64{}, map[wu]*big.Rat{}
	keys := map[refKey]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		w := want[k]
		if w == nil {
			w = new(big.Rat)
		}
		g := new(big.Rat).SetInt64(got[k])
		if k.kind != protocol.KindUsage {
			if g.Cmp(w) != 0 {
				t.Errorf("%+v: meter %d ms, reference %s ms", k, got[k], w.RatString())
			}
			continue
		}
		if diff := new(big.Rat).Sub(g, w); diff.Abs(diff).Cmp(big.NewRat(1, 1)) >= 0 {
			t.Errorf("%+v: meter %d ms, exact share %s ms: 1 ms or more apart", k, got[k], w.RatString())
		}
		u := wu{k.start, k.end, k.unit}
		gotBusy[u] += got[k]
		if wantBusy[u] == nil {
			wantBusy[u] = new(big.Rat)
		}
		wantBusy[u].Add(wantBusy[u], w)
	}
	for u, w := range wantBusy {
		if new(big.Rat).SetInt64(gotBusy[u]).Cmp(w) != 0 {
			t.Errorf("%+v: usage sums to %d ms, busy time is %s ms", u, gotBusy[u], w.RatString())
		}
	}
}

func energyOf(recs []protocol.Record, unit string) int64 {
	var e int64
	for _, r := range recs {
		if r.GPUUUID == unit && r.EnergyMillijoules > 0 {
			e += r.EnergyMillijoules
		}
	}
	return e
}

// energyBound sums the counter's rises between consecutive readable
// observations of unit: records may drop energy (gaps) but never add any.
func energyBound(sc scenario, unit string) int64 {
	var sum int64
	prev := int64(device.Unknown)
	for _, s := range sc.steps {
		cur := int64(device.Unknown)
		for _, o := range s.obs {
			if o.Unit.UUID == unit && o.Unit.Err == nil {
				cur = o.Unit.EnergyMillijoules
			}
		}
		if prev != device.Unknown && cur != device.Unknown && cur > prev {
			sum += cur - prev
		}
		prev = cur
	}
	return sum
}

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
