package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
)

// BenchmarkCycleDGXH100 is one metering cycle of a full DGX H100 node: 8
// GPUs in MIG mode with 7 x 1g.10gb each (56 instances) and 200 compute
// processes of 50 Kubernetes pods, through the NVML collector (on go-nvml's
// mock types), attribution and the meter, at 1 s virtual ticks with 60 s
// windows. Attribution follows the processes it resolved with pidfds, as
// on a node: the processes' facts are in a fake /proc on disk, so each
// fake PID is followed by a real pidfd of the benchmark's own (live)
// process, and a cycle polls 200 real pidfds instead of reading /proc.
func BenchmarkCycleDGXH100(b *testing.B) {
	w := attribution.PidfdStandIn(uint32(os.Getpid()))
	if w == nil {
		b.Skip("pidfd_open is not available here")
	}
	benchCycle(b, attribution.WithProcessWatcher(w))
}

// BenchmarkCycleDGXH100Fallback is the same cycle without a process
// watcher, as where pidfds are not available (kernel before 5.3, another
// PID namespace's /proc, seccomp): every cycle checks each process's start
// time in /proc/<pid>/stat of the fake tree.
func BenchmarkCycleDGXH100Fallback(b *testing.B) {
	benchCycle(b, attribution.WithProcessWatcher(nil))
}

func benchCycle(b *testing.B, opts ...attribution.Option) {
	layout := map[int][]string{}
	for g := range 8 {
		layout[g] = []string{"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"}
	}
	m, err := sim.DGXH100(layout)
	if err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	var units []string
	for g := range 8 {
		units = append(units, m.MIGUUIDs(g)...)
	}
	procs := make(map[string][]device.Process)
	for n := range 200 {
		pid := uint32(10000 + n)
		pod := n / 4
		cg := fmt.Sprintf("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%08x_0000_4000_8000_%012x.slice/cri-containerd-%064x.scope", pod, pod, n)
		writeProc(b, root, pid, int64(1000+n), cg)
		u := units[n%len(units)]
		procs[u] = append(procs[u], device.Process{PID: pid, UsedMemoryBytes: 1 << 30, SMUtil: device.Unknown})
	}
	for u, ps := range procs {
		if err := m.SetProcesses(u, ps); err != nil {
			b.Fatal(err)
		}
	}
	vclock := clock.NewVirtual(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	col := nvml.New(m.Interface(), nvml.Options{Clock: vclock})
	if err := col.Start(); err != nil {
		b.Fatal(err)
	}
	defer col.Close()
	attr, err := attribution.New(attribution.Config{Rules: []attribution.Rule{
		{Name: "k8s", Cgroup: "kubernetes", Tenant: "${pod_uid}"},
	}}, root, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer attr.Close()
	mt, err := meter.New(meter.Options{Node: "bench", Provider: "bench", Window: time.Minute, MaxHold: 3 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	p := &agent.Pipeline{Collector: col, Attributor: attr, Meter: mt, Clock: vclock}
	ctx := context.Background()
	if _, err := p.Cycle(ctx); err != nil { // warm the attribution cache
		b.Fatal(err)
	}
	var records int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		vclock.Advance(time.Second)
		recs, err := p.Cycle(ctx)
		if err != nil {
			b.Fatal(err)
		}
		records += len(recs)
	}
	b.ReportMetric(float64(records)/float64(b.N), "records/op")
}

// writeProc writes the /proc files attribution reads for one process.
func writeProc(b *testing.B, root string, pid uint32, startTicks int64, cgroup string) {
	dir := filepath.Join(root, "proc", fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	stat := fmt.Sprintf("%d (python3) S 1 %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, pid, pid, startTicks)
	files := map[string]string{
		"stat":   stat,
		"status": fmt.Sprintf("Name:\tpython3\nPid:\t%d\nUid:\t0\t0\t0\t0\n", pid),
		"cgroup": "0::" + cgroup + "\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
