package nvml_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/internal/clock"
)

// rewriting is a machine's NVML with some answers replaced, by NVML index
// and MIG slot: what a replaced GPU, a renamed instance, or a layout
// change that keeps an instance's UUID and slot would answer.
type rewriting struct {
	gonvml.Interface
	gpuUUID   map[int]string
	migUUID   map[[2]int]string
	migSlices map[[2]int]uint32
}

func (r *rewriting) DeviceGetHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	h, ret := r.Interface.DeviceGetHandleByIndex(i)
	if ret != gonvml.SUCCESS {
		return h, ret
	}
	return rewrittenGPU{Device: h, r: r, idx: i}, ret
}

type rewrittenGPU struct {
	gonvml.Device
	r   *rewriting
	idx int
}

func (g rewrittenGPU) GetUUID() (string, gonvml.Return) {
	if u, ok := g.r.gpuUUID[g.idx]; ok {
		return u, gonvml.SUCCESS
	}
	return g.Device.GetUUID()
}

func (g rewrittenGPU) GetMigDeviceHandleByIndex(k int) (gonvml.Device, gonvml.Return) {
	h, ret := g.Device.GetMigDeviceHandleByIndex(k)
	if ret != gonvml.SUCCESS {
		return h, ret
	}
	return rewrittenMIG{Device: h, r: g.r, at: [2]int{g.idx, k}}, ret
}

type rewrittenMIG struct {
	gonvml.Device
	r  *rewriting
	at [2]int
}

func (m rewrittenMIG) GetUUID() (string, gonvml.Return) {
	if u, ok := m.r.migUUID[m.at]; ok {
		return u, gonvml.SUCCESS
	}
	return m.Device.GetUUID()
}

func (m rewrittenMIG) GetAttributes() (gonvml.DeviceAttributes, gonvml.Return) {
	a, ret := m.Device.GetAttributes()
	if s, ok := m.r.migSlices[m.at]; ok && ret == gonvml.SUCCESS {
		a.GpuInstanceSliceCount, a.MemorySizeMB = s, uint64(s)*10240
	}
	return a, ret
}

// identityOf is what a snapshot says about who the GPUs and instances are
// and what runs where, without readings that change by themselves.
func identityOf(s device.Snapshot) string { return identityOfReadable(s, true) }

// identityOfReadable is identityOf of the GPUs that were read (no Err),
// unless all.
func identityOfReadable(s device.Snapshot, all bool) string {
	var b strings.Builder
	for _, d := range s.Devices {
		if d.Err != nil && !all {
			continue
		}
		fmt.Fprintf(&b, "%d %s %q mem=%d mig=%v err=%v procs=%v\n", d.Index, d.UUID, d.Model, d.MemoryTotalBytes, d.MIGEnabled, d.Err, pidsOf(d.Processes))
		for _, in := range d.Instances {
			fmt.Fprintf(&b, "  %s gi=%d ci=%d %s %d/%d mem=%d procs=%v\n", in.UUID, in.GPUInstanceID, in.ComputeInstanceID,
				in.Profile, in.Slices, in.TotalSlices, in.MemoryBytes, pidsOf(in.Processes))
		}
	}
	return b.String()
}

func pidsOf(ps []device.Process) []uint32 {
	var out []uint32
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

// TestKeptIdentitiesFollowEveryChange: a collector that has polled all
// along (and keeps canonical UUIDs, profile names and its last identities
// between polls) reports, after each change, exactly what a collector
// started afresh reports: a MIG reconfiguration, a GPU replaced at the
// same index (a new UUID, in a form that needs canonicalizing), an
// instance renamed in the same slot, an instance whose slot and UUID stay
// but whose size changes, a GPU lost and back, and a GPU gone and back
// (which renumbers those after it).
func TestKeptIdentitiesFollowEveryChange(t *testing.T) {
	m := dgx(t, map[int][]string{0: {"3g.40gb", "2g.20gb"}, 2: {"7g.80gb"}})
	for i := range 8 {
		u := m.GPUUUID(i)
		if mig := m.MIGUUIDs(i); mig != nil {
			u = mig[0]
		}
		if err := m.SetProcesses(u, procs(uint32(100+i), uint32(200+i))); err != nil {
			t.Fatal(err)
		}
	}
	lib := &rewriting{Interface: m.Interface(), gpuUUID: map[int]string{}, migUUID: map[[2]int]string{}, migSlices: map[[2]int]uint32{}}
	kept := startedOn(t, lib)
	steps := []struct {
		name   string
		change func()
	}{
		{"as started", func() {}},
		{"unchanged", func() {}},
		{"MIG reconfigured", func() {
			if err := m.SetMIG(0, slices.Repeat([]string{"1g.10gb"}, 7)); err != nil {
				t.Fatal(err)
			}
		}},
		{"MIG off", func() {
			if err := m.SetMIG(2, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"GPU replaced at index 1", func() { lib.gpuUUID[1] = " GPU-AAAAAAAA-1F3B-4C7E-9A2D-6E8F0B1C2D3E" }},
		{"instance renamed in its slot", func() { lib.migUUID[[2]int{0, 3}] = "MIG-BBBBBBBB-1F3B-4C7E-9A2D-6E8F0B1C2D3E" }},
		{"instance resized, same slot and UUID", func() { lib.migSlices[[2]int{0, 3}] = 2 }},
		{"GPU lost", func() { m.SetLost(4, true) }},
		{"GPU back", func() { m.SetLost(4, false) }},
		{"GPU gone, those after renumbered", func() { m.SetPresent(5, false) }},
		{"GPU present again", func() { m.SetPresent(5, true) }},
		{"replaced GPU's original back", func() { delete(lib.gpuUUID, 1) }},
	}
	prev := ""
	for _, st := range steps {
		st.change()
		snap := collect(t, kept)
		got := identityOfReadable(snap, false)
		fresh := nvml.New(lib, nvml.Options{Clock: clock.NewVirtual(t0)})
		if err := fresh.Start(); err != nil {
			t.Fatal(err)
		}
		want := identityOfReadable(collect(t, fresh), false)
		if err := fresh.Close(); err != nil {
			t.Fatal(err)
		}
		// A fresh collector never read a GPU that is lost or left (the
		// one replaced, the one gone), so it leaves it out; the polling
		// one reports it with Err and its last identity (faults_test.go).
		// The GPUs both read must agree.
		errs := 0
		for _, d := range snap.Devices {
			if d.Err != nil {
				errs++
			}
		}
		if wantErrs := map[string]int{"GPU replaced at index 1": 1, "instance renamed in its slot": 1,
			"instance resized, same slot and UUID": 1, "GPU lost": 2, "GPU back": 1,
			"GPU gone, those after renumbered": 2, "GPU present again": 1, "replaced GPU's original back": 1}[st.name]; errs != wantErrs {
			t.Fatalf("%s: %d GPUs with Err, want %d:\n%s", st.name, errs, wantErrs, identityOf(snap))
		}
		if got != want {
			t.Fatalf("%s: the polling collector reports\n%s\na fresh one\n%s", st.name, got, want)
		}
		if st.name != "unchanged" && st.name != "as started" && got == prev {
			t.Fatalf("%s: nothing changed in the snapshot; the step tests nothing", st.name)
		}
		prev = got
	}
}

// TestSnapshotsShareNoMemory: a snapshot is the caller's. Appending to one
// instance's processes or one GPU's instances does not touch the next
// one's (each slice's capacity ends at its own part), and a later Collect does not overwrite an
// earlier snapshot's instances or processes.
func TestSnapshotsShareNoMemory(t *testing.T) {
	m := dgx(t, map[int][]string{0: slices.Repeat([]string{"1g.10gb"}, 7), 1: {"7g.80gb"}})
	uuids := m.MIGUUIDs(0)
	for j, u := range uuids {
		if err := m.SetProcesses(u, procs(uint32(10*j+1), uint32(10*j+2))); err != nil {
			t.Fatal(err)
		}
	}
	c := started(t, m)
	collect(t, c) // sizes the next poll's blocks
	first := collect(t, c)
	want := identityOf(first)
	in := first.Devices[0].Instances
	grown := append(in[0].Processes, device.Process{PID: 999})
	more := append(in, device.Instance{UUID: "MIG-overwritten"})
	if len(grown) != 3 || len(more) != 8 || identityOf(first) != want {
		t.Fatalf("an append to one unit's slices changed another's:\n%s\nwant\n%s", identityOf(first), want)
	}
	for j, u := range uuids {
		if err := m.SetProcesses(u, procs(uint32(500+j))); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SetMIG(0, []string{"7g.80gb"}); err != nil {
		t.Fatal(err)
	}
	second := collect(t, c)
	if identityOf(first) != want {
		t.Fatalf("a later Collect changed an earlier snapshot:\n%s\nwant\n%s", identityOf(first), want)
	}
	if identityOf(second) == want {
		t.Fatal("the second snapshot shows no change: the test tests nothing")
	}
}
