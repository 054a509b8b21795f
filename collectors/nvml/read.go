package nvml

import (
	"errors"
	"fmt"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// readDevice reads GPU idx of count. On error the returned Device carries
// whatever identity was read before it (UUID at least, when that call
// succeeded).
func (c *Collector) readDevice(idx, count int) (device.Device, error) {
	d := device.Device{Index: idx}
	h, ret := c.lib.DeviceGetHandleByIndex(idx)
	if ret != gonvml.SUCCESS {
		return d, fmt.Errorf("GPU %d: get handle: %w", idx, ret)
	}
	raw, ret := h.GetUUID()
	if ret != gonvml.SUCCESS {
		return d, fmt.Errorf("GPU %d: get UUID: %w", idx, ret)
	}
	// Records and the inventory name a GPU by its canonical UUID, the
	// authority's key; one that has none cannot be metered.
	ids := c.idsAt(idx, count)
	uuid, err := ids.canonical(raw)
	if err != nil {
		return d, fmt.Errorf("GPU %d: UUID: %w", idx, err)
	}
	d.UUID = uuid
	fail := func(what string, ret gonvml.Return) (device.Device, error) {
		return d, fmt.Errorf("GPU %d (%s): %s: %w", idx, d.UUID, what, ret)
	}
	if d.Model, ret = h.GetName(); ret != gonvml.SUCCESS {
		return fail("get name", ret)
	}
	mem, ret := h.GetMemoryInfo()
	switch ret {
	case gonvml.SUCCESS:
		d.MemoryTotalBytes, d.MemoryUsedBytes = mem.Total, mem.Used
	case gonvml.ERROR_NOT_SUPPORTED:
	default:
		return fail("get memory info", ret)
	}
	var ok bool
	util, ret := h.GetUtilizationRates()
	if d.UtilizationPercent, ok = describing(ret, func() int { return clampPercent(util.Gpu) }); !ok {
		return fail("get utilization", ret)
	}
	power, ret := h.GetPowerUsage()
	if d.PowerMilliwatts, ok = describing(ret, func() int64 { return int64(power) }); !ok {
		return fail("get power usage", ret)
	}
	energy, ret := h.GetTotalEnergyConsumption()
	if d.EnergyMillijoules, ok = describing(ret, func() int64 { return int64(energy) }); !ok {
		return fail("get total energy", ret)
	}
	mode, _, ret := h.GetMigMode()
	switch ret {
	case gonvml.SUCCESS:
		d.MIGEnabled = mode == gonvml.DEVICE_MIG_ENABLE
	case gonvml.ERROR_NOT_SUPPORTED: // a board without MIG
	default:
		return fail("get MIG mode", ret)
	}
	if d.MIGEnabled {
		// A reconfiguration between taking a MIG handle and reading it
		// invalidates the handle: enumerate again, a bounded number of times.
		var err error
		for range migAttempts {
			d.Instances = nil
			if err = c.readInstances(h, &d, ids); !staleMIGHandle(err) {
				break
			}
		}
		if err != nil {
			return d, fmt.Errorf("GPU %d (%s): %w", idx, d.UUID, err)
		}
		return d, nil
	}
	if err := c.readProcesses(h, &d); err != nil {
		return d, fmt.Errorf("GPU %d (%s): %w", idx, d.UUID, err)
	}
	return d, nil
}

// migAttempts bounds the re-enumerations of one GPU's MIG instances when
// handles go stale mid-read; a GPU reconfigured that often is an Err.
const migAttempts = 3

// staleMIGHandle reports whether err came from a MIG handle that no longer
// names an instance (INVALID_ARGUMENT or NOT_FOUND on a MIG handle call).
func staleMIGHandle(err error) bool {
	_, ok := errors.AsType[errStaleHandle](err)
	return ok
}

// errStaleHandle marks an error of a call on a MIG handle that may have
// been invalidated by a reconfiguration.
type errStaleHandle struct{ error }

func (e errStaleHandle) Unwrap() error { return e.error }

// readInstances enumerates the MIG instances of d afresh: handles from an
// earlier cycle may be invalid after a reconfiguration. MIG handle slots
// can be sparse, so every slot up to the maximum is tried and empty ones
// (NOT_FOUND, INVALID_ARGUMENT) skipped.
func (c *Collector) readInstances(h gonvml.Device, d *device.Device, ids *gpuIDs) error {
	total, err := c.gpuTotalSlices(h, d.UUID)
	if err != nil {
		return err
	}
	n, ret := h.GetMaxMigDeviceCount()
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("get max MIG device count: %w", ret)
	}
	c.ar.startInstances()
	for k := range n {
		mh, ret := h.GetMigDeviceHandleByIndex(k)
		switch ret {
		case gonvml.SUCCESS:
		case gonvml.ERROR_NOT_FOUND, gonvml.ERROR_INVALID_ARGUMENT:
			continue
		default:
			return fmt.Errorf("get MIG device %d: %w", k, ret)
		}
		in, err := c.readInstance(mh, total, d.MemoryTotalBytes, ids.slot(k, n))
		if err != nil {
			err = fmt.Errorf("MIG device %d: %w", k, err)
			if errors.Is(err, gonvml.ERROR_INVALID_ARGUMENT) || errors.Is(err, gonvml.ERROR_NOT_FOUND) {
				return errStaleHandle{err}
			}
			return err
		}
		d.Instances = c.ar.addInstance(in)
	}
	return nil
}

// readInstance reads one MIG instance; ids is what was derived for the
// instance last read in its slot.
func (c *Collector) readInstance(mh gonvml.Device, totalSlices int, gpuMemoryBytes uint64, ids *migIDs) (device.Instance, error) {
	var in device.Instance
	raw, ret := mh.GetUUID()
	if ret != gonvml.SUCCESS {
		return in, fmt.Errorf("get UUID: %w", ret)
	}
	uuid, err := ids.canonical(raw)
	if err != nil {
		return in, fmt.Errorf("UUID: %w", err)
	}
	in.UUID = uuid
	if in.GPUInstanceID, ret = mh.GetGpuInstanceId(); ret != gonvml.SUCCESS {
		return in, fmt.Errorf("%s: get GPU instance id: %w", in.UUID, ret)
	}
	if in.ComputeInstanceID, ret = mh.GetComputeInstanceId(); ret != gonvml.SUCCESS {
		return in, fmt.Errorf("%s: get compute instance id: %w", in.UUID, ret)
	}
	attr, ret := mh.GetAttributes()
	if ret != gonvml.SUCCESS {
		return in, fmt.Errorf("%s: get attributes: %w", in.UUID, ret)
	}
	in.Slices, in.TotalSlices = int(attr.GpuInstanceSliceCount), totalSlices
	in.MemoryBytes = attr.MemorySizeMB << 20
	in.Profile = ids.profileName(in.Slices, attr.MemorySizeMB, gpuMemoryBytes)
	procs, ret := mh.GetComputeRunningProcesses()
	if ret != gonvml.SUCCESS {
		return in, fmt.Errorf("%s: get compute processes: %w", in.UUID, ret)
	}
	in.Processes = c.ar.processes(len(procs))
	for i, p := range procs {
		// NVML has no per-process utilization on MIG handles.
		in.Processes[i] = device.Process{PID: p.Pid, UsedMemoryBytes: p.UsedGpuMemory, SMUtil: device.Unknown}
	}
	return in, nil
}

// ProfileName names a MIG instance as NVIDIA's tools do, from what NVML
// reports: the GPU instance's slice count and memory (MB) and the parent
// GPU's total memory (bytes). NVML gives a MIG handle no profile name, and
// the memory part is not simply the instance's memory in GB (an A100 80GB
// 7-slice instance has 80384 MB, 78.5 GiB, yet is "7g.80gb"). The rule is
// the one of NVIDIA's go-nvlib (pkg/nvlib/device/mig_profile.go): the
// instance's fraction of GPU memory rounded up to eighths, times the GPU's
// memory in whole GiB rounded up, rounded to the nearest GB; done here in
// integers. Media-extension variants (+me) report the same slices and
// memory as their base profile and get its name. With no GPU total
// (memory info not supported) the instance memory is rounded up to GiB.
func ProfileName(slices int, memoryMB, gpuMemoryBytes uint64) string {
	const gib = 1 << 30
	gb := (memoryMB + 1023) / 1024
	if gpuMemoryBytes > 0 {
		eighths := (memoryMB<<20*8 + gpuMemoryBytes - 1) / gpuMemoryBytes
		totalGB := (gpuMemoryBytes + gib - 1) / gib
		gb = (eighths*totalGB + 4) / 8
	}
	return fmt.Sprintf("%dg.%dgb", slices, gb)
}

// gpuTotalSlices is the slice count of the GPU's largest GPU instance
// profile (7 on A100/H100/H200): the denominator of an instance's share.
// If the board lists no profiles, the maximum MIG device count stands in
// (equal to the slice count on every MIG-capable board so far).
func (c *Collector) gpuTotalSlices(h gonvml.Device, uuid string) (int, error) {
	if n, ok := c.totalSlices[uuid]; ok {
		return n, nil
	}
	total := 0
	for id := range gonvml.GPU_INSTANCE_PROFILE_COUNT {
		info, ret := h.GetGpuInstanceProfileInfo(id)
		switch ret {
		case gonvml.SUCCESS:
			total = max(total, int(info.SliceCount))
		case gonvml.ERROR_NOT_SUPPORTED, gonvml.ERROR_INVALID_ARGUMENT:
		default:
			return 0, fmt.Errorf("get GPU instance profile %d: %w", id, ret)
		}
	}
	if total == 0 {
		n, ret := h.GetMaxMigDeviceCount()
		if ret != gonvml.SUCCESS {
			return 0, fmt.Errorf("get max MIG device count: %w", ret)
		}
		total = n
	}
	c.totalSlices[uuid] = total
	return total, nil
}

// readProcesses lists the compute processes of a whole GPU with their SM
// utilization since the last cycle's newest sample.
func (c *Collector) readProcesses(h gonvml.Device, d *device.Device) error {
	procs, ret := h.GetComputeRunningProcesses()
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("get compute processes: %w", ret)
	}
	if len(procs) == 0 {
		return nil
	}
	d.Processes = c.ar.processes(len(procs))
	for i, p := range procs {
		d.Processes[i] = device.Process{PID: p.Pid, UsedMemoryBytes: p.UsedGpuMemory, SMUtil: device.Unknown}
	}
	samples, ret := h.GetProcessUtilization(c.lastSample[d.UUID])
	switch ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_NOT_FOUND, gonvml.ERROR_NOT_SUPPORTED:
		// NOT_FOUND: no sample newer than the last one; not an error.
		return nil
	case gonvml.ERROR_GPU_IS_LOST:
		return fmt.Errorf("get process utilization: %w", ret)
	default:
		// Utilization only weighs a shared GPU's split; without it the
		// split is equal, which is no reason to make the GPU a gap.
		c.log.Debug("process utilization unreadable", "gpu", d.UUID, "err", ret)
		return nil
	}
	last := c.lastSample[d.UUID]
	weighSamples(d.Processes, samples, last, &c.weighing)
	for _, s := range samples {
		last = max(last, s.TimeStamp)
	}
	c.lastSample[d.UUID] = last
	return nil
}

// weighSamples sets each process's SMWeight, the sum of its SM
// utilization over its samples newer than last, counting a (PID,
// timestamp) once however often NVML lists it, and its SMUtil, their
// mean. A process with no such sample keeps SMUtil Unknown and weight 0:
// it gets a share only from samples it has. Empty slots of NVML's buffer
// (timestamp 0) and samples of other PIDs are ignored. w is scratch kept
// between calls.
func weighSamples(procs []device.Process, samples []gonvml.ProcessUtilizationSample, last uint64, w *weighing) {
	clear(w.seen)
	clear(w.at)
	for i, p := range procs {
		w.at[p.PID] = i
	}
	n := append(w.n[:0], make([]int64, len(procs))...)
	for _, s := range samples {
		i, ok := w.at[s.Pid]
		k := sampleKey{s.Pid, s.TimeStamp}
		if !ok || s.TimeStamp == 0 || s.TimeStamp <= last || w.seen[k] {
			continue
		}
		w.seen[k] = true
		// Garbage values above 100 have been seen: clamp each one.
		procs[i].SMWeight += int64(clampPercent(s.SmUtil))
		n[i]++
	}
	for i := range procs {
		if n[i] > 0 {
			procs[i].SMUtil = int(procs[i].SMWeight / n[i])
		}
	}
	w.n = n
}

// weighing is weighSamples' scratch.
type weighing struct {
	seen map[sampleKey]bool
	at   map[uint32]int
	n    []int64
}

type sampleKey struct {
	pid uint32
	ts  uint64
}

// describing is a reading that describes the GPU (utilization, power,
// energy) from a call that returned ret: value on SUCCESS. Such readings
// do not decide whose time it is, so any failure but a lost GPU makes the
// reading Unknown, never the GPU's time a gap; a lost GPU is not ok, and
// fails the whole read.
func describing[T int | int64](ret gonvml.Return, value func() T) (v T, ok bool) {
	switch ret {
	case gonvml.SUCCESS:
		return value(), true
	case gonvml.ERROR_GPU_IS_LOST:
		return 0, false
	}
	return device.Unknown, true
}

func clampPercent(v uint32) int {
	return int(min(v, 100))
}
