package nvml

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/internal/clock"
)

var (
	// ErrNotStarted is returned by Collect before a successful Start.
	ErrNotStarted = errors.New("NVML collector not started")
	// ErrClosed is returned by Start and Collect after Close.
	ErrClosed = errors.New("NVML collector closed")
	// ErrNotEnumerated is a Device.Err: a GPU seen in an earlier cycle is
	// no longer enumerated by NVML (fell off the bus, removed, driver
	// reloaded without it). It is device.ErrNotEnumerated, which the agent
	// reads without knowing which collector made the snapshot.
	ErrNotEnumerated = device.ErrNotEnumerated
	// ErrNoGPU is returned by Start when the driver answers but sees no
	// GPU: nothing to meter, most often GPUs hidden from this process.
	ErrNoGPU = errors.New("NVML sees no GPU on this node (check nvidia-smi -L, and that the service may open /dev/nvidia*)")
)

// Options configure a Collector; the zero value is usable.
type Options struct {
	// Clock stamps snapshots; nil means the real clock.
	Clock clock.Clock
	// Log receives state changes (GPU lost, back, missing); nil discards.
	Log *slog.Logger
	// DriverDir is the kernel driver's /proc directory (DriverProcDir on
	// a node; "" for none, as for simulated GPUs). A GPU NVML cannot read
	// and the collector never read is reported by the identity the driver
	// gives it there (its UUID and model), with Err, rather than left out.
	DriverDir string
}

type state int

const (
	stateNew state = iota
	stateStarted
	stateInitFailed
	stateClosed
)

// Collector reads every GPU on the node through an gonvml.Interface, one
// Snapshot per Collect. Collect calls are serialized.
type Collector struct {
	lib       gonvml.Interface
	driverDir string
	clk       clock.Clock
	log       *slog.Logger

	mu      sync.Mutex
	state   state
	initErr error // Start's error after a failed Init, returned again
	// known is the last successfully read identity of every GPU ever seen,
	// by UUID: what a lost or vanished GPU is reported as.
	known map[string]device.Device
	// byIndex maps an NVML index to the UUID read there last cycle, so a
	// GPU whose handle or UUID cannot be read still has an identity.
	byIndex map[int]string
	// lastSample is, per GPU UUID, the newest process-utilization sample
	// timestamp seen: the next call asks only for newer samples.
	lastSample map[string]uint64
	// totalSlices caches, per GPU UUID, the slice count of its largest
	// GPU instance profile (a property of the board, never changes).
	totalSlices map[string]int
	// failing remembers which GPUs were failing, to log transitions once.
	failing    map[string]bool
	failingIdx map[int]bool
	// driverNamed are the GPUs known only by the kernel driver's name for
	// them (driverproc.go), until NVML reads them.
	driverNamed map[string]bool

	// Kept between polls (reuse.go): the strings derived per NVML index,
	// the last poll's arena (to size the next), and Collect's and
	// weighSamples' scratch, cleared each poll; nextIndex becomes byIndex
	// at the poll's end.
	ids       []gpuIDs
	ar        arena
	nextIndex map[int]string
	reported  map[string]bool
	weighing  weighing
}

// New returns a collector over lib (Open() for the real library, or a
// simulated Machine's Interface()). It calls nothing until Start.
func New(lib gonvml.Interface, opts Options) *Collector {
	c := &Collector{
		lib: lib, clk: opts.Clock, log: opts.Log, driverDir: opts.DriverDir,
		known: map[string]device.Device{}, byIndex: map[int]string{},
		lastSample: map[string]uint64{}, totalSlices: map[string]int{},
		failing: map[string]bool{}, failingIdx: map[int]bool{}, driverNamed: map[string]bool{},
		nextIndex: map[int]string{}, reported: map[string]bool{},
		weighing: weighing{seen: map[sampleKey]bool{}, at: map[uint32]int{}},
	}
	if c.clk == nil {
		c.clk = clock.Real{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Start initializes NVML. When Init fails the error wraps the gonvml.Return
// (errors.Is(err, gonvml.ERROR_LIBRARY_NOT_FOUND)) and says what to check;
// the collector then never calls NVML again, not even Shutdown: the real
// library crashes the process on a symbol lookup after a failed Init.
func (c *Collector) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateStarted:
		return nil
	case stateInitFailed:
		return c.initErr
	case stateClosed:
		return ErrClosed
	}
	if ret := c.lib.Init(); ret != gonvml.SUCCESS {
		c.state = stateInitFailed
		c.initErr = fmt.Errorf("NVML init failed: %s: %w", initHint(ret), ret)
		return c.initErr
	}
	// A node whose driver sees no GPU has nothing to meter: most often the
	// GPUs are hidden from this process (container, DevicePolicy). Refuse
	// to start rather than run and report nothing.
	n, ret := c.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS || n == 0 {
		_ = c.lib.Shutdown()
		c.state = stateInitFailed
		if ret != gonvml.SUCCESS {
			c.initErr = fmt.Errorf("NVML: count GPUs: %w", ret)
		} else {
			c.initErr = ErrNoGPU
		}
		return c.initErr
	}
	c.state = stateStarted
	if v, ret := c.lib.SystemGetDriverVersion(); ret == gonvml.SUCCESS {
		c.log.Info("NVML initialized", "driver_version", v)
	}
	return nil
}

func initHint(ret gonvml.Return) string {
	switch ret {
	case gonvml.ERROR_LIBRARY_NOT_FOUND:
		return "library not found (is the NVIDIA driver installed? libnvidia-ml.so.1)"
	case gonvml.ERROR_DRIVER_NOT_LOADED:
		return "driver not loaded (is the nvidia kernel module loaded? check nvidia-smi)"
	case gonvml.ERROR_NO_PERMISSION:
		return "no permission (can this user open /dev/nvidia*?)"
	case gonvml.ERROR_LIB_RM_VERSION_MISMATCH:
		return "driver and library versions differ (reload the nvidia module or reboot after a driver upgrade)"
	default:
		return "unexpected NVML error"
	}
}

// Close shuts NVML down if Start succeeded; it is safe to call again.
func (c *Collector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	wasStarted := c.state == stateStarted
	c.state = stateClosed
	if !wasStarted {
		return nil
	}
	if ret := c.lib.Shutdown(); ret != gonvml.SUCCESS {
		return fmt.Errorf("NVML shutdown: %w", ret)
	}
	return nil
}

// Collect reads every GPU once. A GPU that cannot be read is reported with
// its last known identity and Device.Err, and the others are still read;
// an error is returned only when nothing could be read (not started,
// enumeration failed, context done). It never panics: a panic inside the
// NVML layer becomes an error.
func (c *Collector) Collect(ctx context.Context) (snap device.Snapshot, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateNew:
		return device.Snapshot{}, ErrNotStarted
	case stateInitFailed:
		return device.Snapshot{}, fmt.Errorf("collect: %w", c.initErr)
	case stateClosed:
		return device.Snapshot{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return device.Snapshot{}, fmt.Errorf("collect: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			snap, err = device.Snapshot{}, fmt.Errorf("collect: NVML call panicked: %v", r)
		}
	}()
	snap.Time = c.clk.Now()
	count, ret := c.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return device.Snapshot{}, fmt.Errorf("collect: count GPUs: %w", ret)
	}
	snap.Devices = make([]device.Device, 0, max(count, len(c.known)))
	c.ar = newArena(&c.ar)
	byIndex, reported := c.nextIndex, c.reported
	clear(byIndex)
	clear(reported)
	var unnamed []error // the read errors of indexes without identity
	for idx := range count {
		if err := ctx.Err(); err != nil {
			return device.Snapshot{}, fmt.Errorf("collect: %w", err)
		}
		d, err := c.readDevice(idx, count)
		if err == nil {
			delete(c.driverNamed, d.UUID)
			if known, ok := c.known[d.UUID]; !ok || !sameIdentity(&known, &d) {
				c.known[d.UUID] = identity(d)
			}
			c.noteOK(d.UUID)
			delete(c.failingIdx, idx)
			byIndex[idx], reported[d.UUID] = d.UUID, true
			snap.Devices = append(snap.Devices, d)
			continue
		}
		uuid := d.UUID
		if uuid == "" {
			uuid = c.byIndex[idx]
		}
		last, ok := c.known[uuid]
		if !ok || reported[uuid] {
			// Never read successfully: no identity of NVML's to meter a
			// gap against. The kernel driver may name it (learnUnreadable,
			// below); otherwise it is left out until it can be read.
			if !ok {
				unnamed = append(unnamed, err)
			}
			if !c.failingIdx[idx] {
				c.failingIdx[idx] = true
				c.log.Warn("unknown GPU unreadable, left out until it reads", "index", idx, "err", err)
			}
			continue
		}
		last.Err = err
		byIndex[idx], reported[uuid] = uuid, true
		c.noteFailure(uuid, err)
		snap.Devices = append(snap.Devices, last)
	}
	c.byIndex, c.nextIndex = byIndex, c.byIndex
	snap.Devices = c.reportUnnamed(snap.Devices, unnamed, reported)
	start := len(snap.Devices)
	for uuid, last := range c.known {
		if !reported[uuid] {
			last.Err = fmt.Errorf("GPU %d (%s): %w", last.Index, uuid, ErrNotEnumerated)
			c.noteFailure(uuid, last.Err)
			snap.Devices = append(snap.Devices, last)
		}
	}
	slices.SortFunc(snap.Devices[start:], func(a, b device.Device) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.UUID, b.UUID))
	})
	return snap, nil
}

// identity is what is kept of a GPU for when it cannot be read: who it is,
// not what it was doing. Readings become Unknown and processes are dropped,
// since a lost GPU's time is a gap whatever ran on it before.
func identity(d device.Device) device.Device {
	id := device.Device{
		Index: d.Index, UUID: d.UUID, Model: d.Model,
		MemoryTotalBytes:   d.MemoryTotalBytes,
		UtilizationPercent: device.Unknown,
		PowerMilliwatts:    device.Unknown,
		EnergyMillijoules:  device.Unknown,
		MIGEnabled:         d.MIGEnabled,
	}
	if len(d.Instances) > 0 {
		id.Instances = make([]device.Instance, len(d.Instances))
		for i, in := range d.Instances {
			in.Processes = nil
			id.Instances[i] = in
		}
	}
	return id
}

func (c *Collector) noteFailure(key string, err error) {
	if !c.failing[key] {
		c.failing[key] = true
		c.log.Warn("GPU unreadable, its time is a gap until it reads again", "gpu", key, "err", err)
	}
}

func (c *Collector) noteOK(uuid string) {
	if c.failing[uuid] {
		delete(c.failing, uuid)
		c.log.Info("GPU readable again", "gpu", uuid)
	}
}
