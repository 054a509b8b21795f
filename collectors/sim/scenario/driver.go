package scenario

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

// Driver brings a sim.Machine and a fake host root to a scenario's state at
// any virtual time. Apply is called from one goroutine (not safe for
// concurrent use); the Machine it drives may be read concurrently.
type Driver struct {
	s      *Scenario
	m      *sim.Machine
	host   *hostRoot
	squeue string // the fake squeue's path, "" without slurm_jobs

	units    []Unit
	unitUUID []string // "" for a unit of a layout not applied yet
	unitOf   map[Unit]int
	slices   []int // per unit: MIG slices, TotalSlices for a whole GPU
	layout   []int // per GPU: the index of its layout in force

	// events are the scenario's change points in time order; next is the
	// first not yet applied. Apply only moves forward, so a call with no
	// event due does no more than integrate energy.
	events []event
	next   int
	last   time.Time
	begun  bool

	active [][]int // per unit: indexes into s.procs of running processes
	lost   []bool  // per GPU

	dirtyUnit []bool
	dirtyGPU  []bool
	procBuf   []device.Process

	// procMu guards alive and running, which Apply writes and the process
	// watcher (Watcher) reads, possibly from another goroutine.
	procMu  sync.Mutex
	alive   []bool         // per s.procs: the process runs now
	running map[uint32]int // PID → index into s.procs of the process holding it
}

type eventKind int

// At one instant, processes end before faults change and new processes
// start, so a PID handed from an ending process to a starting one (PID
// reuse) is free when the new one starts; a reconfiguration comes after
// the jobs on the old layout end (and a fault ends) and before those on
// the new one start.
const (
	evEnd eventKind = iota
	evBack
	evReconfig
	evLost
	evStart
)

type event struct {
	at   time.Duration // offset from Scenario.Start
	kind eventKind
	ref  int // index into s.procs (evStart, evEnd), s.Faults or s.Reconfigure
}

// NewDriver builds the scenario's machine (one sim.GPUSpec per GPU) and
// its host root under hostRoot (which must be missing or empty): proc/stat
// with the boot time (an hour before the scenario starts), etc/passwd with
// the tenants' users. Nothing runs until the first Apply.
func NewDriver(s *Scenario, hostRoot string) (*Driver, error) {
	specs := make([]sim.GPUSpec, len(s.GPUs))
	for i, g := range s.GPUs {
		specs[i] = sim.GPUSpec{Model: g.Model, UUID: g.UUID, MIG: g.MIG}
	}
	m, err := sim.NewMachine(specs...)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	h, err := newHostRoot(hostRoot, s)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	sq, err := writeSqueue(hostRoot, s)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	d := &Driver{s: s, m: m, host: h, squeue: sq, units: s.Units(), unitOf: map[Unit]int{},
		lost: make([]bool, len(s.GPUs)), dirtyGPU: make([]bool, len(s.GPUs)), layout: make([]int, len(s.GPUs))}
	for i, u := range d.units {
		d.unitOf[u] = i
		n := TotalSlices
		if u.MIG >= 0 {
			n, _ = profileSlices(s.layoutsOf(u.GPU)[u.Layout].mig[u.MIG])
		}
		d.unitUUID = append(d.unitUUID, "")
		d.slices = append(d.slices, n)
	}
	for g := range s.GPUs {
		d.nameUnits(g)
	}
	d.active = make([][]int, len(d.units))
	d.dirtyUnit = make([]bool, len(d.units))
	d.alive, d.running = make([]bool, len(s.procs)), map[uint32]int{}
	for i := range s.procs {
		d.events = append(d.events, event{s.procs[i].start, evStart, i}, event{s.procs[i].end, evEnd, i})
	}
	for i, f := range s.Faults {
		d.events = append(d.events, event{f.LostAt, evLost, i}, event{f.BackAt, evBack, i})
	}
	for i, rc := range s.Reconfigure {
		d.events = append(d.events, event{rc.At, evReconfig, i})
	}
	sort.SliceStable(d.events, func(a, b int) bool {
		ea, eb := &d.events[a], &d.events[b]
		if ea.at != eb.at {
			return ea.at < eb.at
		}
		return ea.kind < eb.kind
	})
	for i := range s.GPUs {
		m.SetUtilization(i, 0)
		m.SetPower(i, IdlePowerWatts*1000)
	}
	return d, nil
}

// Machine is the simulated node the driver programs.
func (d *Driver) Machine() *sim.Machine { return d.m }

// HostRoot is the directory holding the fake proc/ and etc/.
func (d *Driver) HostRoot() string { return d.host.root }

// Scenario is the scenario being driven.
func (d *Driver) Scenario() *Scenario { return d.s }

// nameUnits gives the units of GPU g's layout in force their UUIDs, as
// the machine made them (a MIG instance's is new at every layout).
func (d *Driver) nameUnits(g int) {
	migs := d.m.MIGUUIDs(g)
	for i, u := range d.units {
		if u.GPU != g || u.Layout != d.layout[g] {
			continue
		}
		if u.MIG < 0 {
			d.unitUUID[i] = d.m.GPUUUID(g)
		} else {
			d.unitUUID[i] = migs[u.MIG]
		}
	}
}

// UnitUUID is the GPU-… or MIG-… UUID of a unit: "" if it has none, or
// while its layout has not been applied (MIG instances get their UUIDs
// when they are created).
func (d *Driver) UnitUUID(u Unit) string {
	if i, ok := d.unitOf[u]; ok {
		return d.unitUUID[i]
	}
	return ""
}

// Apply brings the machine and the host root to the scenario's state at
// t: each GPU has the MIG layout in force at t, the processes running at t
// are on their units and in proc/, faults active at t make their GPUs
// lost, and every GPU's energy counter has
// integrated its power since the previous Apply. Times must not go
// backwards (energy only accumulates); before the start and after the end
// nothing runs. A call with no change point since the last one costs one
// energy update and touches no file.
func (d *Driver) Apply(t time.Time) error {
	if d.begun {
		if t.Before(d.last) {
			return fmt.Errorf("apply scenario %s at %s: before the last applied time %s",
				d.s.Name, t.Format(time.RFC3339Nano), d.last.Format(time.RFC3339Nano))
		}
		if el := t.Sub(d.last); el > 0 {
			d.m.AdvanceEnergy(el)
		}
	}
	d.last, d.begun = t, true
	off := t.Sub(d.s.Start)
	if d.next >= len(d.events) || d.events[d.next].at > off {
		return nil
	}
	for ; d.next < len(d.events) && d.events[d.next].at <= off; d.next++ {
		if err := d.handle(&d.events[d.next]); err != nil {
			return fmt.Errorf("apply scenario %s at %s: %w", d.s.Name, t.Format(time.RFC3339Nano), err)
		}
	}
	for u, dirty := range d.dirtyUnit {
		if !dirty {
			continue
		}
		d.dirtyUnit[u] = false
		if err := d.m.SetProcesses(d.unitUUID[u], d.processes(u)); err != nil {
			return fmt.Errorf("apply scenario %s at %s: %w", d.s.Name, t.Format(time.RFC3339Nano), err)
		}
	}
	for g, dirty := range d.dirtyGPU {
		if dirty {
			d.dirtyGPU[g] = false
			d.updateGPU(g)
		}
	}
	return nil
}

func (d *Driver) handle(e *event) error {
	switch e.kind {
	case evStart, evEnd:
		p := &d.s.procs[e.ref]
		j := &d.s.Jobs[p.job]
		u := d.unitOf[j.Unit()]
		d.dirtyUnit[u], d.dirtyGPU[j.GPU] = true, true
		d.setAlive(e.ref, p.pid, e.kind == evStart)
		if e.kind == evEnd {
			d.active[u] = slices.DeleteFunc(d.active[u], func(i int) bool { return i == e.ref })
			return d.host.endProcess(p.pid)
		}
		d.active[u] = append(d.active[u], e.ref)
		return d.host.startProcess(p.pid, d.s.Tenants[j.Tenant].UID, d.s.cgroupPath(p), d.s.Start.Add(p.start))
	case evLost, evBack:
		g := d.s.Faults[e.ref].GPU
		d.lost[g] = e.kind == evLost
		d.m.SetLost(g, d.lost[g])
		d.dirtyGPU[g] = true
	case evReconfig:
		rc := &d.s.Reconfigure[e.ref]
		// Validation keeps jobs off the GPU now: no process is dropped.
		if err := d.m.SetMIG(rc.GPU, rc.MIG); err != nil {
			return err
		}
		for u, unit := range d.units {
			if unit.GPU == rc.GPU {
				// The old layout's units are gone (a job that ended at this
				// instant left its unit dirty): nothing to set on them.
				d.dirtyUnit[u] = false
			}
		}
		d.layout[rc.GPU] = rc.layout
		d.nameUnits(rc.GPU)
		d.dirtyGPU[rc.GPU] = true
	}
	return nil
}

// processes lists unit u's running processes as NVML reports them.
func (d *Driver) processes(u int) []device.Process {
	d.procBuf = d.procBuf[:0]
	for _, i := range d.active[u] {
		p := &d.s.procs[i]
		j := &d.s.Jobs[p.job]
		d.procBuf = append(d.procBuf, device.Process{
			PID: p.pid, UsedMemoryBytes: uint64(j.MemoryMiB) << 20, SMUtil: j.Utilization,
		})
	}
	return d.procBuf // SetProcesses copies it
}

// updateGPU sets GPU g's utilization and power from its running jobs.
//
// Utilization: a unit's is the sum of its processes' (time-slicing adds up),
// at most 100; a MIG GPU's is its instances' weighted by their slices.
// Power is deliberately simple: the draw of the hungriest running job
// (Job.PowerWatts, by default 70 W plus utilization's share of the rest
// up to the model's power limit), idle power when
// nothing runs, and 0 while the GPU is lost (nothing is metered then).
func (d *Driver) updateGPU(g int) {
	util, power := 0, 0
	for u, unit := range d.units {
		if unit.GPU != g {
			continue
		}
		sum := 0
		for _, i := range d.active[u] {
			j := &d.s.Jobs[d.s.procs[i].job]
			sum += j.Utilization
			power = max(power, j.power(d.s.GPUs[g].maxPower))
		}
		util += min(sum, 100) * d.slices[u]
	}
	d.m.SetUtilization(g, util/TotalSlices)
	switch {
	case d.lost[g]:
		power = 0
	case power == 0:
		power = IdlePowerWatts
	}
	d.m.SetPower(g, int64(power)*1000)
}

// power is the job's board power in watts while it runs, on a GPU whose
// power limit is maxW.
func (j *Job) power(maxW int) int {
	if j.PowerWatts > 0 {
		return j.PowerWatts
	}
	return IdlePowerWatts + (maxW-IdlePowerWatts)*j.Utilization/100
}

// setAlive records that process instance i (holding pid) started or ended.
func (d *Driver) setAlive(i int, pid uint32, alive bool) {
	d.procMu.Lock()
	defer d.procMu.Unlock()
	d.alive[i] = alive
	switch {
	case alive:
		d.running[pid] = i
	case d.running[pid] == i:
		delete(d.running, pid)
	}
}

// ProcessWatcher follows the simulated processes exactly, as pidfds follow
// a real host's: the driver knows when each process instance ends, so a
// metering agent on the simulator needs no /proc read to tell a process it
// already knows from a later one that reused its PID. Its methods are
// those of collectors/attribution's ProcessWatcher; a handle is the
// process instance's index, which no later process ever gets.
type ProcessWatcher struct{ d *Driver }

// errNotRunning is Watch's answer for a PID no simulated process holds.
var errNotRunning = errors.New("no simulated process holds this PID")

// Watcher is the driver's process watcher.
func (d *Driver) Watcher() ProcessWatcher { return ProcessWatcher{d} }

// Watch follows the process holding pid now.
func (w ProcessWatcher) Watch(pid uint32) (int, error) {
	w.d.procMu.Lock()
	defer w.d.procMu.Unlock()
	i, ok := w.d.running[pid]
	if !ok {
		return 0, fmt.Errorf("watch PID %d: %w", pid, errNotRunning)
	}
	return i, nil
}

// Exited sets exited[i] when handles[i]'s process has ended: at the Apply
// that ended it, whether or not a new process took its PID at once.
func (w ProcessWatcher) Exited(handles []int, exited []bool) error {
	if len(exited) < len(handles) {
		return fmt.Errorf("process watcher: %d handles, room for %d answers", len(handles), len(exited))
	}
	w.d.procMu.Lock()
	defer w.d.procMu.Unlock()
	for i, h := range handles {
		if h < 0 || h >= len(w.d.alive) {
			return fmt.Errorf("process watcher: no handle %d", h)
		}
		exited[i] = !w.d.alive[h]
	}
	return nil
}

// Release forgets a handle; a handle holds nothing, so there is nothing to
// free.
func (ProcessWatcher) Release(int) {}
