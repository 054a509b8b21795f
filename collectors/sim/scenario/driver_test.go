package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

const driverYAML = `start: 2026-11-23T00:00:00Z
duration: 1h
gpus:
  - {}
  - mig: [3g.40gb, 1g.10gb]
tenants:
  acme: {user: acme, uid: 2001}
  k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41:
    cgroup: /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_uid_systemd}.slice/cri-containerd-{container}.scope
    pod_uid: 3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41
  slurm-4242: {uid: 2002, cgroup: "/system.slice/slurmstepd.scope/job_{job}/step_{run}/user/task_0"}
  umbrella: {uid: 2010, cgroup: "/tenant.slice/tenant-umbrella.slice/job-{job}.scope"}
jobs:
  # PIDs: run 0 20000 20001, run 1 (10m) 20004 20005, run 2 (20m) 20006 20007.
  - {tenant: acme, gpu: 0, start: 0s, end: 30m, processes: 2, utilization: 40, memory_mib: 2048, restart_every: 10m}
  # PID 20003.
  - {tenant: k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41, gpu: 0, start: 5m, end: 20m, utilization: 60}
  # PID 20002 in every run (0, 20m, 40m).
  - {tenant: slurm-4242, gpu: 1, mig: 1, start: 0s, end: 1h, job_id: 4242, restart_every: 20m, reuse_pids: true}
  # PID 777, then the same PID for acme on another GPU.
  - {tenant: umbrella, gpu: 1, mig: 0, start: 10m, end: 40m, pid: 777}
  - {tenant: acme, gpu: 0, start: 40m, end: 50m, pid: 777}
faults: [{gpu: 1, lost_at: 45m, back_at: 50m}]
`

// procFile is what the driver should have written for one process.
type procFile struct {
	uid    int
	cgroup string
	start  time.Duration // since the scenario start
}

const (
	acmeSession = "/user.slice/user-2001.slice/session-1.scope"
	acmeLater   = "/user.slice/user-2001.slice/session-5.scope"
	slurmStep   = "/system.slice/slurmstepd.scope/job_4242/step_"
	umbrellaJob = "/tenant.slice/tenant-umbrella.slice/job-4.scope"
	k8sPrefix   = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_8c1b_4a57_9f1e_2b8d7c6a5e41.slice/cri-containerd-"
)

func TestDriverApply(t *testing.T) {
	s, err := Parse("driver.yaml", []byte(driverYAML))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "host")
	d, err := NewDriver(s, root)
	if err != nil {
		t.Fatal(err)
	}
	lib := d.Machine().Interface()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatalf("Init: %v", ret)
	}
	wholeGPU, mig0, mig1 := Unit{GPU: 0, MIG: -1}, Unit{GPU: 1, MIG: 0}, Unit{GPU: 1, MIG: 1}
	tests := []struct {
		name  string
		at    time.Duration
		units map[Unit][]uint32 // nil slice: the unit's GPU is lost
		procs map[uint32]procFile
	}{
		{"before the start", -time.Second,
			map[Unit][]uint32{wholeGPU: {}, mig0: {}, mig1: {}}, map[uint32]procFile{}},
		{"start", 0,
			map[Unit][]uint32{wholeGPU: {20000, 20001}, mig0: {}, mig1: {20002}},
			map[uint32]procFile{
				20000: {2001, acmeSession, 0}, 20001: {2001, acmeSession, 0},
				20002: {2002, slurmStep + "0/user/task_0", 0},
			}},
		{"time-sliced", 7 * time.Minute,
			map[Unit][]uint32{wholeGPU: {20000, 20001, 20003}, mig0: {}, mig1: {20002}},
			map[uint32]procFile{
				20000: {2001, acmeSession, 0}, 20001: {2001, acmeSession, 0},
				20002: {2002, slurmStep + "0/user/task_0", 0},
				20003: {0, k8sPrefix, 5 * time.Minute},
			}},
		{"restart gives new PIDs", 10 * time.Minute,
			map[Unit][]uint32{wholeGPU: {20003, 20004, 20005}, mig0: {777}, mig1: {20002}},
			map[uint32]procFile{
				20002: {2002, slurmStep + "0/user/task_0", 0},
				20003: {0, k8sPrefix, 5 * time.Minute},
				20004: {2001, acmeSession, 10 * time.Minute}, 20005: {2001, acmeSession, 10 * time.Minute},
				777: {2010, umbrellaJob, 10 * time.Minute},
			}},
		{"reused PID has a new start time", 20 * time.Minute,
			map[Unit][]uint32{wholeGPU: {20006, 20007}, mig0: {777}, mig1: {20002}},
			map[uint32]procFile{
				20002: {2002, slurmStep + "1/user/task_0", 20 * time.Minute},
				20006: {2001, acmeSession, 20 * time.Minute}, 20007: {2001, acmeSession, 20 * time.Minute},
				777: {2010, umbrellaJob, 10 * time.Minute},
			}},
		{"PID passes to another tenant", 40 * time.Minute,
			map[Unit][]uint32{wholeGPU: {777}, mig0: {}, mig1: {20002}},
			map[uint32]procFile{
				20002: {2002, slurmStep + "2/user/task_0", 40 * time.Minute},
				777:   {2001, acmeLater, 40 * time.Minute},
			}},
		{"GPU lost", 45 * time.Minute,
			map[Unit][]uint32{wholeGPU: {777}, mig0: nil, mig1: nil},
			map[uint32]procFile{
				20002: {2002, slurmStep + "2/user/task_0", 40 * time.Minute},
				777:   {2001, acmeLater, 40 * time.Minute},
			}},
		{"GPU back", 50 * time.Minute,
			map[Unit][]uint32{wholeGPU: {}, mig0: {}, mig1: {20002}},
			map[uint32]procFile{20002: {2002, slurmStep + "2/user/task_0", 40 * time.Minute}}},
		{"end", time.Hour,
			map[Unit][]uint32{wholeGPU: {}, mig0: {}, mig1: {}}, map[uint32]procFile{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.Apply(s.Start.Add(tt.at)); err != nil {
				t.Fatal(err)
			}
			for u, want := range tt.units {
				got, ret := unitPIDs(lib, u)
				if want == nil {
					if ret != nvml.ERROR_GPU_IS_LOST {
						t.Errorf("%v: %v, want GPU_IS_LOST", u, ret)
					}
					continue
				}
				if ret != nvml.SUCCESS || !slices.Equal(got, want) {
					t.Errorf("%v: PIDs %v (%v), want %v", u, got, ret, want)
				}
			}
			checkProcDir(t, root, s.Start, tt.procs)
		})
	}
	if err := d.Apply(s.Start.Add(time.Minute)); err == nil {
		t.Error("Apply went back in time without an error")
	}
}

// unitPIDs reads a unit's processes through NVML, as the collector does.
func unitPIDs(lib nvml.Interface, u Unit) ([]uint32, nvml.Return) {
	dev, ret := lib.DeviceGetHandleByIndex(u.GPU)
	if ret != nvml.SUCCESS {
		return nil, ret
	}
	if u.MIG >= 0 {
		if dev, ret = dev.GetMigDeviceHandleByIndex(u.MIG); ret != nvml.SUCCESS {
			return nil, ret
		}
	}
	infos, ret := dev.GetComputeRunningProcesses()
	pids := []uint32{}
	for _, p := range infos {
		pids = append(pids, p.Pid)
	}
	slices.Sort(pids)
	return pids, ret
}

// checkProcDir asserts that proc/ holds exactly the want processes, with
// their uid, cgroup (a prefix for Kubernetes: the container id follows)
// and start time in clock ticks since btime (an hour before start).
func checkProcDir(t *testing.T, root string, start time.Time, want map[uint32]procFile) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		if e.IsDir() {
			pids = append(pids, e.Name())
		}
	}
	var wantPIDs []string
	for pid := range want {
		wantPIDs = append(wantPIDs, strconv.Itoa(int(pid)))
	}
	slices.Sort(pids)
	slices.Sort(wantPIDs)
	if !slices.Equal(pids, wantPIDs) {
		t.Errorf("proc/ has %v, want %v", pids, wantPIDs)
	}
	for pid, w := range want {
		dir := filepath.Join(root, "proc", strconv.Itoa(int(pid)))
		stat := readFile(t, filepath.Join(dir, "stat"))
		fields := strings.Fields(stat)
		wantTicks := strconv.FormatInt(int64((w.start+time.Hour)/time.Millisecond/10), 10)
		if len(fields) != 52 || fields[0] != strconv.Itoa(int(pid)) || fields[21] != wantTicks {
			t.Errorf("pid %d: stat has %d fields, pid %s, starttime %s; want 52, %d, %s",
				pid, len(fields), fields[0], fields[21], pid, wantTicks)
		}
		uidLine := "\nUid:\t" + strings.Repeat(strconv.Itoa(w.uid)+"\t", 3) + strconv.Itoa(w.uid) + "\n"
		if status := readFile(t, filepath.Join(dir, "status")); !strings.Contains(status, uidLine) {
			t.Errorf("pid %d: status lacks %q:\n%s", pid, uidLine, status)
		}
		cg := readFile(t, filepath.Join(dir, "cgroup"))
		if !strings.HasPrefix(cg, "0::"+w.cgroup) || !strings.HasSuffix(cg, "\n") || strings.Count(cg, "\n") != 1 {
			t.Errorf("pid %d: cgroup %q, want 0::%s…", pid, cg, w.cgroup)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDriverHostFiles(t *testing.T) {
	s, err := Parse("driver.yaml", []byte(driverYAML))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := NewDriver(s, root); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file, want string
	}{
		{"proc/stat", "\nbtime " + strconv.FormatInt(s.Start.Unix()-3600, 10) + "\n"},
		{"etc/passwd", "root:x:0:0:"},
		{"etc/passwd", "\nacme:x:2001:2001:acme:/home/acme:/bin/bash\n"},
	}
	for _, tt := range tests {
		if got := readFile(t, filepath.Join(root, tt.file)); !strings.Contains(got, tt.want) {
			t.Errorf("%s lacks %q:\n%s", tt.file, tt.want, got)
		}
	}
	// The host root must start empty: the driver never mixes its files with others.
	if _, err := NewDriver(s, root); err == nil {
		t.Error("NewDriver reused a non-empty host root")
	}
}

func TestDriverDevices(t *testing.T) {
	s, err := Parse("driver.yaml", []byte(driverYAML))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDriver(s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lib := d.Machine().Interface()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatalf("Init: %v", ret)
	}
	gpu0, _ := lib.DeviceGetHandleByIndex(0)
	gpu1, _ := lib.DeviceGetHandleByIndex(1)
	energy := func(dev nvml.Device) uint64 {
		mj, ret := dev.GetTotalEnergyConsumption()
		if ret != nvml.SUCCESS {
			t.Fatalf("energy: %v", ret)
		}
		return mj
	}
	step := func(at time.Duration) {
		if err := d.Apply(s.Start.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	step(6 * time.Minute)
	e0, e1 := energy(gpu0), energy(gpu1)
	step(6*time.Minute + 10*time.Second)
	tests := []struct {
		name      string
		got, want any
	}{
		// 2 × 40 % (acme) + 60 % (k8s) is over 100.
		{"utilization", util(t, gpu0), uint32(100)},
		// The hungriest job: k8s at 70 + 630 × 0.6 W.
		{"power", power(t, gpu0), uint32(448_000)},
		{"energy over 10 s", energy(gpu0) - e0, uint64(4_480_000)},
		// The MIG GPU runs a job at 100 %: 700 W.
		{"energy of the MIG GPU", energy(gpu1) - e1, uint64(7_000_000)},
		{"process memory and SM", procSM(t, gpu0), "20000:2048MiB:40 20001:2048MiB:40 20003:1024MiB:60"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	step(55 * time.Minute) // GPU 0 idle, GPU 1 running slurm only
	e0 = energy(gpu0)
	step(55*time.Minute + 2*time.Second)
	if got := energy(gpu0) - e0; got != 140_000 {
		t.Errorf("idle energy over 2 s: %d mJ, want 140000 (70 W)", got)
	}
	if got := power(t, gpu0); got != 70_000 {
		t.Errorf("idle power: %d mW, want 70000", got)
	}
}

func util(t *testing.T, dev nvml.Device) uint32 {
	u, ret := dev.GetUtilizationRates()
	if ret != nvml.SUCCESS {
		t.Fatalf("utilization: %v", ret)
	}
	return u.Gpu
}

func power(t *testing.T, dev nvml.Device) uint32 {
	p, ret := dev.GetPowerUsage()
	if ret != nvml.SUCCESS {
		t.Fatalf("power: %v", ret)
	}
	return p
}

// procSM lists "pid:memory:sm" of a whole GPU's processes, sorted by PID.
func procSM(t *testing.T, dev nvml.Device) string {
	infos, ret := dev.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		t.Fatalf("processes: %v", ret)
	}
	samples, ret := dev.GetProcessUtilization(0)
	if ret != nvml.SUCCESS {
		t.Fatalf("process utilization: %v", ret)
	}
	sm := map[uint32]uint32{}
	for _, s := range samples {
		sm[s.Pid] = s.SmUtil
	}
	var out []string
	for _, p := range infos {
		out = append(out, strconv.Itoa(int(p.Pid))+":"+strconv.Itoa(int(p.UsedGpuMemory>>20))+"MiB:"+strconv.Itoa(int(sm[p.Pid])))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

const reconfigYAML = `start: 2026-11-23T00:00:00Z
duration: 1h
gpus:
  - mig: [1g.10gb, 1g.10gb]
reconfigure:
  - {gpu: 0, at: 20m, mig: [3g.40gb]}
  - {gpu: 0, at: 40m, mig: []}
tenants: {a: {uid: 1}}
jobs:
  - {tenant: a, gpu: 0, mig: 1, start: 0s, end: 20m}
  - {tenant: a, gpu: 0, mig: 0, start: 20m, end: 40m}
  - {tenant: a, gpu: 0, start: 40m, end: 1h}
faults: [{gpu: 0, lost_at: 10m, back_at: 20m}]
`

// TestDriverReconfigures: at each reconfiguration the machine takes the
// new layout (new MIG UUIDs, or MIG off), its units get their UUIDs then,
// and a job that ends at that instant on the old layout and one that
// starts on the new one both land where they belong.
func TestDriverReconfigures(t *testing.T) {
	s, err := Parse("reconfig.yaml", []byte(reconfigYAML))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDriver(s, filepath.Join(t.TempDir(), "host"))
	if err != nil {
		t.Fatal(err)
	}
	lib := d.Machine().Interface()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatalf("Init: %v", ret)
	}
	old0, old1 := Unit{GPU: 0, MIG: 0}, Unit{GPU: 0, MIG: 1}
	big, whole := Unit{GPU: 0, MIG: 0, Layout: 1}, Unit{GPU: 0, MIG: -1, Layout: 2}
	first := d.UnitUUID(old0)
	if first == "" || d.UnitUUID(old1) == "" || d.UnitUUID(big) != "" || d.UnitUUID(whole) != "" {
		t.Fatalf("before any reconfiguration: UUIDs %q %q %q %q, want only the first layout's",
			first, d.UnitUUID(old1), d.UnitUUID(big), d.UnitUUID(whole))
	}
	steps := []struct {
		at   time.Duration
		unit Unit
		pids []uint32
		migs int // MIG instances on the machine; 0: MIG off
	}{
		{0, old1, []uint32{20000}, 2},
		{20 * time.Minute, big, []uint32{20001}, 1},
		{40 * time.Minute, whole, []uint32{20002}, 0},
	}
	for _, st := range steps {
		if err := d.Apply(s.Start.Add(st.at)); err != nil {
			t.Fatalf("at %v: %v", st.at, err)
		}
		if n := len(d.Machine().MIGUUIDs(0)); n != st.migs {
			t.Errorf("at %v: %d MIG instances, want %d", st.at, n, st.migs)
		}
		got, ret := unitPIDs(lib, st.unit)
		if ret != nvml.SUCCESS || !slices.Equal(got, st.pids) {
			t.Errorf("at %v: %v has PIDs %v (%v), want %v", st.at, st.unit, got, ret, st.pids)
		}
		uuid := d.UnitUUID(st.unit)
		if st.unit.MIG >= 0 && (uuid == "" || uuid == first || uuid != d.Machine().MIGUUIDs(0)[st.unit.MIG]) {
			t.Errorf("at %v: %v is %q, want the machine's new instance (not %s)", st.at, st.unit, uuid, first)
		}
	}
	if got := d.UnitUUID(whole); got != d.Machine().GPUUUID(0) {
		t.Errorf("MIG off: whole GPU unit is %q, want %s", got, d.Machine().GPUUUID(0))
	}
}
