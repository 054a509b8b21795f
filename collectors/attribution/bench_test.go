package attribution

import (
	"context"
	"fmt"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// BenchmarkAttribute is a full node: 8 GPUs in MIG mode, 7 instances each
// (56 units), 200 compute processes of 50 pods, cache warm, without a
// process watcher: every call reads each process's start time from /proc
// (the PID-reuse check), which dominates its cost.
func BenchmarkAttribute(b *testing.B) { benchAttribute(b) }

// benchAttribute runs the benchmark's node through an Attributor built
// with opts, and returns it.
func benchAttribute(b *testing.B, opts ...Option) *Attributor {
	h := newFakeHost(b, "root:x:0:0::/root:/bin/bash\n")
	var devs []device.Device
	pid := uint32(10000)
	for g := range 8 {
		var inst []device.Instance
		for m := range 7 {
			inst = append(inst, mig(fmt.Sprintf("MIG-%d-%d", g, m)))
		}
		devs = append(devs, migGPU(fmt.Sprintf("GPU-%d", g), inst...))
	}
	for n := range 200 {
		pod := n / 4
		h.proc(pid, int64(1000+n), 0, fmt.Sprintf(
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%08x_0000_4000_8000_%012x.slice/cri-containerd-%064x.scope",
			pod, pod, n))
		u := n % 56
		d := &devs[u/7].Instances[u%7]
		d.Processes = append(d.Processes, proc(pid, n%100))
		pid++
	}
	cfg := mustConfig(b, `rules:
  - cgroup: slurm
    tenant: slurm-${job}
  - cgroup: kubernetes
    tenant: ${pod_uid}
  - user: root
    tenant: root
`)
	a, err := New(cfg, h.root, opts...)
	if err != nil {
		b.Fatal(err)
	}
	snap := snapshot(devs...)
	ctx := context.Background()
	obs := a.Attribute(ctx, snap) // warm the cache
	for _, o := range obs {
		for _, s := range o.Shares {
			if s.Tenant == Unattributed {
				b.Fatalf("unit %s: unattributed pids %v: the fixture is wrong", o.Unit.UUID, s.PIDs)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		a.Attribute(ctx, snap)
	}
	return a
}
