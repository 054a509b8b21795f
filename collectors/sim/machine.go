package sim

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/uuid"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// uuidSpace is the namespace of the simulator's name-based (SHA-1) UUIDs.
var uuidSpace = uuid.MustParse("5b0e6a43-6f1c-4c55-9a3e-6770756d6574")

// GPUSpec describes one simulated GPU.
type GPUSpec struct {
	// Model is one of Models(); empty means DefaultModel.
	Model string
	// UUID is the GPU's "GPU-..." UUID; empty derives one from the index.
	UUID string
	// MIG is the MIG layout as profile names ("3g.40gb", "1g.10gb", ...);
	// empty means MIG mode off.
	MIG []string
}

// Machine is a programmable node of simulated GPUs behind nvml.Interface.
// All state is guarded by mu: setters take the write lock, every NVML call
// the read lock, so a scenario driver may write while a collector reads.
type Machine struct {
	mu     sync.RWMutex
	lib    *library
	gpus   []*gpu
	models map[string]*model

	initErr    nvml.Return // returned by Init when not SUCCESS
	initFailed bool        // Init returned initErr: any later call is fatal
	initCount  int         // Init minus Shutdown calls, as NVML refcounts
	// afterFailedInit counts calls made after a failed Init (each also
	// panics); tests read it in case a caller recovered the panic.
	afterFailedInit int
	// energyCarryNS is time below AdvanceEnergy's microsecond resolution,
	// kept for the next call.
	energyCarryNS time.Duration
}

// gpu is one simulated physical GPU.
type gpu struct {
	index   int // physical index, stable; NVML indices skip absent GPUs
	model   *model
	handle  *gpuHandle // its nvml.Device, over the mock server's device
	uuid    string
	present bool
	lost    bool

	utilPct      int // device.Unknown: NOT_SUPPORTED
	powerMW      int64
	energyMJ     int64
	energyFracNJ int64 // nanojoules not yet a whole millijoule
	energyOK     bool

	procs []device.Process // whole GPU, when not in MIG mode

	mig    []*migInstance // nil: MIG mode off
	migGen int            // bumped per SetMIG so new instances get new UUIDs
	// sampleTick advances per GetProcessUtilization call: the driver keeps
	// sampling while processes run, so each call has newer samples. Atomic
	// because NVML calls hold only the read lock.
	sampleTick atomic.Uint64
	// samples, when non-nil, is the driver's process-utilization buffer
	// as set by SetProcessSamples, answered instead of generated samples.
	samples []nvml.ProcessUtilizationSample
}

// migInstance is one MIG instance (one GPU instance, one compute instance).
type migInstance struct {
	handle  *migHandle
	uuid    string
	profile string
	info    nvml.GpuInstanceProfileInfo
	giID    int
	ciID    int
	procs   []device.Process
}

// NewMachine builds a Machine with the given GPUs (at least one).
func NewMachine(specs ...GPUSpec) (*Machine, error) {
	if len(specs) == 0 {
		return nil, errors.New("new simulated machine: no GPUs given")
	}
	m := &Machine{models: models()}
	seen := map[string]int{}
	devs := make([]nvml.Device, 0, len(specs))
	for i, spec := range specs {
		mod, err := lookupModel(m.models, spec.Model)
		if err != nil {
			return nil, fmt.Errorf("new simulated machine: GPU %d: %w", i, err)
		}
		g := &gpu{index: i, model: mod, present: true, energyOK: true, uuid: spec.UUID}
		if g.uuid == "" {
			g.uuid = "GPU-" + uuid.NewSHA1(uuidSpace, fmt.Appendf(nil, "gpu/%d", i)).String()
		}
		if j, dup := seen[g.uuid]; dup {
			return nil, fmt.Errorf("new simulated machine: GPU %d: UUID %s already used by GPU %d", i, g.uuid, j)
		}
		seen[g.uuid] = i
		dev := server.NewDeviceFromConfig(mod.config, i)
		// The mock server's own answers (PCI lookups and such) agree.
		dev.UUID = g.uuid
		g.handle = m.newGPUHandle(g, dev)
		if len(spec.MIG) > 0 {
			if err := m.setMIGLocked(g, spec.MIG); err != nil {
				return nil, fmt.Errorf("new simulated machine: GPU %d: %w", i, err)
			}
		}
		m.gpus = append(m.gpus, g)
		devs = append(devs, g.handle)
	}
	srv := server.NewServerWithGPUs("550.54.15", "12.550.54.15", 12040)
	srv.Devices = devs
	m.lib = &library{Server: srv, m: m}
	return m, nil
}

// DGXH100 is eight H100 SXM5 80GB GPUs; the GPUs named in migGPUs are in
// MIG mode with the given layouts.
func DGXH100(migGPUs map[int][]string) (*Machine, error) {
	specs := make([]GPUSpec, 8)
	for i, layout := range migGPUs {
		if i < 0 || i >= len(specs) {
			return nil, fmt.Errorf("DGX H100: no GPU %d (0-7)", i)
		}
		specs[i].MIG = layout
	}
	return NewMachine(specs...)
}

// Interface is the NVML API of the machine.
func (m *Machine) Interface() nvml.Interface { return m.lib }

// GPUUUID is GPU i's UUID ("" when there is no GPU i).
func (m *Machine) GPUUUID(i int) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if i < 0 || i >= len(m.gpus) {
		return ""
	}
	return m.gpus[i].uuid
}

// MIGUUIDs are GPU i's MIG instance UUIDs in layout order (nil: MIG off).
func (m *Machine) MIGUUIDs(i int) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if i < 0 || i >= len(m.gpus) || m.gpus[i].mig == nil {
		return nil
	}
	out := make([]string, len(m.gpus[i].mig))
	for j, in := range m.gpus[i].mig {
		out[j] = in.uuid
	}
	return out
}

// SetMIG reconfigures GPU i: profiles empty turns MIG mode off, otherwise
// MIG is on with exactly these instances, all with new UUIDs. Processes on
// the GPU or its old instances are dropped (the driver refuses to
// reconfigure a busy GPU, so they cannot survive it).
func (m *Machine) SetMIG(i int, profiles []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, err := m.gpuLocked(i)
	if err != nil {
		return fmt.Errorf("set MIG layout: %w", err)
	}
	if err := m.setMIGLocked(g, profiles); err != nil {
		return fmt.Errorf("set MIG layout of GPU %d: %w", i, err)
	}
	return nil
}

func (m *Machine) setMIGLocked(g *gpu, profiles []string) error {
	if len(profiles) == 0 {
		g.mig, g.procs = nil, nil
		g.migGen++
		return nil
	}
	infos, err := g.model.layout(profiles)
	if err != nil {
		return err
	}
	g.migGen++
	mig := make([]*migInstance, len(profiles))
	for j, info := range infos {
		in := &migInstance{
			uuid: "MIG-" + uuid.NewSHA1(uuidSpace,
				fmt.Appendf(nil, "%s/mig/%d/%d", g.uuid, g.migGen, j)).String(),
			profile: profiles[j],
			info:    info,
			// Real GPU instance ids depend on placement; the simulator
			// numbers them in layout order from 1. One compute instance
			// spans each GPU instance, so its id is 0 as in NVML.
			giID: j + 1,
			ciID: 0,
		}
		in.handle = m.newMIGHandle(g, in)
		mig[j] = in
	}
	g.mig, g.procs = mig, nil
	return nil
}

// SetProcesses replaces the compute processes on a unit: a GPU not in MIG
// mode (by its GPU UUID) or a MIG instance (by its MIG UUID).
func (m *Machine) SetProcesses(unitUUID string, procs []device.Process) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	procs = slices.Clone(procs)
	for _, g := range m.gpus {
		if g.uuid == unitUUID {
			if g.mig != nil {
				return fmt.Errorf("set processes on %s: GPU %d is in MIG mode, name one of its MIG instances", unitUUID, g.index)
			}
			g.procs = procs
			return nil
		}
		for _, in := range g.mig {
			if in.uuid == unitUUID {
				in.procs = procs
				return nil
			}
		}
	}
	return fmt.Errorf("set processes on %s: no such GPU or MIG instance", unitUUID)
}

// SetUtilization sets GPU i's utilization (0-100); device.Unknown makes
// GetUtilizationRates answer NOT_SUPPORTED.
// SetProcessSamples makes GPU i's GetProcessUtilization answer from
// samples, as NVML's sample buffer: the entries newer than the timestamp
// asked for, as listed (duplicates too), plus empty slots (timestamp 0),
// NOT_FOUND when none is newer. Time-sliced processes get samples at
// different timestamps, as on hardware. nil goes back to one generated
// sample per process and call.
func (m *Machine) SetProcessSamples(i int, samples []nvml.ProcessUtilizationSample) {
	m.with(i, func(g *gpu) { g.samples = slices.Clone(samples) })
}

func (m *Machine) SetUtilization(i int, pct int) {
	m.with(i, func(g *gpu) { g.utilPct = pct })
}

// SetPower sets GPU i's power draw, which AdvanceEnergy integrates.
func (m *Machine) SetPower(i int, milliwatts int64) {
	m.with(i, func(g *gpu) { g.powerMW = milliwatts })
}

// AddEnergy adds mj to GPU i's total energy counter.
func (m *Machine) AddEnergy(i int, mj int64) {
	m.with(i, func(g *gpu) { g.energyMJ += mj })
}

// AdvanceEnergy integrates every GPU's current power over d into its energy
// counter, exactly: sub-microsecond time and sub-millijoule energy carry
// over to the next call, so many small steps add up to one big one.
func (m *Machine) AdvanceEnergy(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d += m.energyCarryNS
	us := int64(d / time.Microsecond)
	m.energyCarryNS = d % time.Microsecond
	for _, g := range m.gpus {
		// mW × µs = nJ; the remainder below 1 mJ (10^6 nJ) carries over.
		g.energyFracNJ += g.powerMW * us
		g.energyMJ += g.energyFracNJ / 1_000_000
		g.energyFracNJ %= 1_000_000
	}
}

// SetEnergySupported makes GetTotalEnergyConsumption answer NOT_SUPPORTED
// for GPU i when ok is false (older boards have no energy counter).
func (m *Machine) SetEnergySupported(i int, ok bool) {
	m.with(i, func(g *gpu) { g.energyOK = ok })
}

// SetLost makes every NVML call on GPU i and its MIG handles answer
// ERROR_GPU_IS_LOST (Xid 79, fallen off the bus) until set back.
func (m *Machine) SetLost(i int, lost bool) {
	m.with(i, func(g *gpu) { g.lost = lost })
}

// SetPresent removes GPU i from enumeration (present false) or puts it
// back. Like the real driver, NVML indices of the GPUs after it shift down.
func (m *Machine) SetPresent(i int, present bool) {
	m.with(i, func(g *gpu) { g.present = present })
}

// SetInitError makes Init fail with ret (e.g. ERROR_LIBRARY_NOT_FOUND,
// ERROR_DRIVER_NOT_LOADED); SUCCESS clears it. After a failed Init, any
// other call panics, as the real library dies on a symbol lookup.
func (m *Machine) SetInitError(ret nvml.Return) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initErr = ret
}

// CallsAfterFailedInit counts NVML calls made after a failed Init. Each
// also panicked; the count survives a recover.
func (m *Machine) CallsAfterFailedInit() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.afterFailedInit
}

func (m *Machine) with(i int, f func(*gpu)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, err := m.gpuLocked(i); err == nil {
		f(g)
	}
}

func (m *Machine) gpuLocked(i int) (*gpu, error) {
	if i < 0 || i >= len(m.gpus) {
		return nil, fmt.Errorf("no GPU %d (machine has %d)", i, len(m.gpus))
	}
	return m.gpus[i], nil
}
