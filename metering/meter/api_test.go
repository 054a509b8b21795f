package meter

import (
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{name: "defaults", opts: Options{Node: "n"}},
		{name: "five minutes", opts: Options{Node: "n", Window: 5 * time.Minute, MaxHold: 1500 * time.Millisecond}},
		{name: "no node", opts: Options{}, wantErr: true},
		{name: "window not dividing a day", opts: Options{Node: "n", Window: 7 * time.Minute}, wantErr: true},
		{name: "window not whole ms", opts: Options{Node: "n", Window: time.Second + time.Microsecond}, wantErr: true},
		{name: "negative window", opts: Options{Node: "n", Window: -time.Minute}, wantErr: true},
		{name: "max hold not whole ms", opts: Options{Node: "n", MaxHold: 1500 * time.Microsecond}, wantErr: true},
		{name: "negative max hold", opts: Options{Node: "n", MaxHold: -time.Second}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.opts)
			if (err != nil) != tc.wantErr || (err == nil) == (m == nil) {
				t.Fatalf("New(%+v) = %v, %v; want error %v", tc.opts, m, err, tc.wantErr)
			}
		})
	}
}

// Times from time.Now() carry a monotonic reading: positions follow
// t.Sub(first), whatever the wall clock does in between, and record times
// are anchored to the first observation's wall time.
func TestMonotonicTimeline(t *testing.T) {
	m, err := New(Options{Node: "n", Window: time.Second, MaxHold: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var recs []protocol.Record
	for ms := int64(0); ms <= 10_000; ms += 250 {
		recs = append(recs, m.Observe(start.Add(time.Duration(ms)*time.Millisecond), obs(used(g0, "a")))...)
	}
	recs = append(recs, m.Stop(start.Add(10_500*time.Millisecond))...)
	checkRecords(t, recs, "n", time.Second)
	var usage int64
	for _, r := range recs {
		usage += r.GPUMillis
	}
	if usage != 10_500 {
		t.Errorf("metered %d ms over 10500 ms", usage)
	}
	first, last := recs[0].WindowStart, recs[len(recs)-1].WindowEnd
	if first.UnixMilli() != start.UnixMilli() || last.Sub(first) != 10_500*time.Millisecond {
		t.Errorf("timeline %v-%v, want from %v for 10.5s", first, last, start.UTC())
	}
	if first.Round(0) != first || first.Location() != time.UTC {
		t.Errorf("record times must be plain UTC times: %#v", first)
	}
}

func TestCallsBeforeStartAndAfterStop(t *testing.T) {
	m, err := New(Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Stop(at(0)); r != nil {
		t.Errorf("Stop before any observation returned %v", r)
	}
	if r := m.Observe(at(1000), obs(idle(g1))); r != nil {
		t.Errorf("Observe after Stop returned %v", r)
	}
	if tot := m.Totals(); len(tot) != 0 {
		t.Errorf("Totals of an unstarted meter: %v", tot)
	}
}

// Totals counts the open window too, and never twice once it is emitted;
// it is called from another goroutine while the meter runs (go test -race).
func TestTotalsConcurrentWithObserve(t *testing.T) {
	m, err := New(Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				_ = m.Totals()
			}
		}
	}()
	var emitted int64
	for ms := int64(0); ms <= 90_000; ms += 1000 {
		for _, r := range m.Observe(at(ms), obs(used(g0, "a"), idle(gpu("GPU-2", 0, device.Unknown)))) {
			if r.GPUUUID == "GPU-0" {
				emitted += r.GPUMillis
			}
		}
	}
	close(done)
	wg.Wait()
	tot := m.Totals()
	usage := tot[TotalsKey{Tenant: "a", UnitUUID: "GPU-0", Kind: protocol.KindUsage}]
	idleMs := tot[TotalsKey{UnitUUID: "GPU-2", Kind: protocol.KindIdle}]
	if emitted != 60_000 || usage != 90_000 || idleMs != 90_000 {
		t.Errorf("emitted %d, totals usage %d idle %d; want 60000, 90000, 90000", emitted, usage, idleMs)
	}
}
