package attribution

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// decodeConfig decodes YAML the way the agent does: strictly.
func decodeConfig(text string) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	err := dec.Decode(&cfg)
	return cfg, err
}

func mustConfig(t testing.TB, text string) Config {
	t.Helper()
	cfg, err := decodeConfig(text)
	if err != nil {
		t.Fatalf("decode config: %v", err)
	}
	return cfg
}

// proc is a process with one utilization sample of sm (none when sm < 0).
func proc(pid uint32, sm int) device.Process {
	return device.Process{PID: pid, UsedMemoryBytes: 1 << 30, SMUtil: sm, SMWeight: int64(max(sm, 0))}
}

func wholeGPU(uuid string, procs ...device.Process) device.Device {
	return device.Device{
		UUID: uuid, Model: "NVIDIA H100 80GB HBM3", UtilizationPercent: 50,
		PowerMilliwatts: device.Unknown, EnergyMillijoules: device.Unknown, Processes: procs,
	}
}

func migGPU(uuid string, inst ...device.Instance) device.Device {
	d := wholeGPU(uuid)
	d.MIGEnabled, d.Instances = true, inst
	return d
}

func mig(uuid string, procs ...device.Process) device.Instance {
	return device.Instance{UUID: uuid, Profile: "1g.10gb", Slices: 1, TotalSlices: 7, Processes: procs}
}

func snapshot(devs ...device.Device) device.Snapshot {
	return device.Snapshot{Devices: devs}
}

// fakeHost writes a host root like the fixtures under testdata/, for tests
// that change it while they run. gopsutil reads start time from field 22 of
// proc/<pid>/stat; without proc/uptime it takes the boot time as 0, so the
// start time in ms is startTicks/100*1000.
type fakeHost struct {
	t    testing.TB
	root string
}

func newFakeHost(t testing.TB, passwd string) *fakeHost {
	t.Helper()
	h := &fakeHost{t: t, root: t.TempDir()}
	h.write("proc/stat", "cpu  1 0 1 100 0 0 0 0 0 0\nbtime 1700000000\n")
	h.write("etc/passwd", passwd)
	return h
}

func (h *fakeHost) write(rel, content string) {
	h.t.Helper()
	p := filepath.Join(h.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// proc writes (or rewrites) a process: a new startTicks is a new process
// behind the same PID.
func (h *fakeHost) proc(pid uint32, startTicks int64, uid int, cgroupPath string) {
	h.t.Helper()
	dir := fmt.Sprintf("proc/%d/", pid)
	h.write(dir+"stat", fmt.Sprintf("%d (python3) S 1 %d %d 0 -1 4194560 100 0 0 0 10 5 0 0 20 0 4 0 %d "+
		"1000000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n", pid, pid, pid, startTicks))
	h.write(dir+"status", fmt.Sprintf("Name:\tpython3\nState:\tS (sleeping)\nTgid:\t%d\nPid:\t%d\nPPid:\t1\n"+
		"Uid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\nThreads:\t4\n", pid, pid, uid, uid, uid, uid, uid, uid, uid, uid))
	h.write(dir+"cgroup", "0::"+cgroupPath+"\n")
}

func (h *fakeHost) remove(pid uint32) {
	h.t.Helper()
	if err := os.RemoveAll(filepath.Join(h.root, fmt.Sprintf("proc/%d", pid))); err != nil {
		h.t.Fatal(err)
	}
}

// render prints observations compactly for comparisons and failure messages.
func render(obs []Observation) string {
	var b strings.Builder
	for _, o := range obs {
		fmt.Fprintf(&b, "%s:", o.Unit.UUID)
		switch {
		case o.Lost():
			b.WriteString(" lost")
		case len(o.Shares) == 0:
			b.WriteString(" idle")
		}
		if o.SplitRule != "" {
			fmt.Fprintf(&b, " split=%s", o.SplitRule)
		}
		for _, s := range o.Shares {
			fmt.Fprintf(&b, " [%s %s w=%d pids=%v]", s.Tenant, s.Method, s.Weight, s.PIDs)
		}
		b.WriteString("\n")
	}
	return b.String()
}
