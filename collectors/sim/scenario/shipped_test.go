package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
)

// TestShippedAttribution checks that each shipped scenario's own rules
// give every job's processes the tenant the scenario names them by (the
// name Expected uses), reading the driver's host root. Jobs are visited
// in start order, through one Attributor, so the PID handed from one
// tenant to another in the DGX day must be attributed afresh.
func TestShippedAttribution(t *testing.T) {
	for _, path := range shipped {
		t.Run(filepath.Base(path), func(t *testing.T) {
			s, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			d, root := startDriver(t, s)
			a, err := attribution.New(s.Attribution, root, attribution.WithSqueue(d.Squeue()))
			if err != nil {
				t.Fatal(err)
			}
			// Every run of every job, at its start.
			order := make([]int, len(s.procs))
			for i := range order {
				order[i] = i
			}
			sort.SliceStable(order, func(x, y int) bool { return s.procs[order[x]].start < s.procs[order[y]].start })
			checked := map[string]bool{}
			for _, i := range order {
				p := &s.procs[i]
				j := &s.Jobs[p.job]
				if err := d.Apply(s.Start.Add(p.start)); err != nil {
					t.Fatal(err)
				}
				snap := device.Snapshot{Time: s.Start.Add(p.start), Devices: []device.Device{{
					UUID: "GPU-test", PowerMilliwatts: device.Unknown, EnergyMillijoules: device.Unknown,
					UtilizationPercent: device.Unknown,
					Processes:          []device.Process{{PID: p.pid, SMUtil: device.Unknown}},
				}}}
				obs := a.Attribute(context.Background(), snap)
				got := fmt.Sprint(obs[0].Shares)
				if len(obs[0].Shares) != 1 || obs[0].Shares[0].Tenant != j.Tenant {
					t.Errorf("job %d run %d pid %d at %v: shares %s, want tenant %s",
						p.job+1, p.run, p.pid, p.start, got, j.Tenant)
				}
				checked[j.Tenant] = true
			}
			if len(checked) != len(s.Tenants) {
				t.Errorf("checked tenants %v, want all %d", checked, len(s.Tenants))
			}
		})
	}
}

// BenchmarkApplyDay applies the DGX day at 1 s ticks (86,400 Apply calls
// per iteration), as a virtual-time simulation does.
func BenchmarkApplyDay(b *testing.B) {
	s, err := Load(shipped[1])
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ticks := int(s.Duration / s.PollInterval)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root, err := os.MkdirTemp(dir, "host")
		if err != nil {
			b.Fatal(err)
		}
		d, err := NewDriver(s, root)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for k := 0; k <= ticks; k++ {
			if err := d.Apply(s.Start.Add(time.Duration(k) * s.PollInterval)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(ticks+1)), "ns/apply")
}

// BenchmarkApplyUnchanged is one Apply with no change point due: the
// common case, which must not touch the filesystem.
func BenchmarkApplyUnchanged(b *testing.B) {
	s, err := Parse("long.yaml", []byte("start: 2026-11-23T00:00:00Z\nduration: 100000h\n"+
		"gpus: [{}, {}, {}, {}, {}, {}, {}, {}]\ntenants: {a: {uid: 1}}\n"+
		"jobs: [{tenant: a, gpu: 0, start: 0s, end: 100000h, processes: 4}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewDriver(s, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Apply(s.Start); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if err := d.Apply(s.Start.Add(time.Duration(i) * time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
