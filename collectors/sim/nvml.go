package sim

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// notAvailable is what NVML puts in ProcessInfo's GPU/compute instance ids
// for a process on a GPU that is not in MIG mode.
const notAvailable = ^uint32(0)

const mib = 1 << 20

// begin takes the read lock (the caller must RUnlock) and checks the
// library's state: it panics after a failed Init, as the real library
// dies on a symbol lookup, and answers UNINITIALIZED before Init.
func (m *Machine) begin(call string) nvml.Return {
	m.mu.RLock()
	if m.initFailed {
		m.mu.RUnlock()
		m.mu.Lock()
		m.afterFailedInit++
		m.mu.Unlock()
		panic(fmt.Sprintf("sim: NVML %s called after a failed Init (the real library would crash here)", call))
	}
	if m.initCount == 0 {
		return nvml.ERROR_UNINITIALIZED
	}
	return nvml.SUCCESS
}

// beginGPU is begin plus the GPU's own state: a lost or removed GPU
// answers GPU_IS_LOST to every call through an old handle.
func (m *Machine) beginGPU(call string, g *gpu) nvml.Return {
	if ret := m.begin(call); ret != nvml.SUCCESS {
		return ret
	}
	if g.lost || !g.present {
		return nvml.ERROR_GPU_IS_LOST
	}
	return nvml.SUCCESS
}

// nvmlIndexLocked is g's NVML index: its position among present GPUs.
func (m *Machine) nvmlIndexLocked(g *gpu) int {
	n := 0
	for _, o := range m.gpus[:g.index] {
		if o.present {
			n++
		}
	}
	return n
}

func (m *Machine) wireInterface() {
	s := m.srv
	s.InitFunc = func() nvml.Return {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.initErr != nvml.SUCCESS {
			m.initFailed = true
			return m.initErr
		}
		m.initFailed = false
		m.initCount++
		return nvml.SUCCESS
	}
	s.ShutdownFunc = func() nvml.Return {
		if ret := m.begin("Shutdown"); ret != nvml.SUCCESS {
			m.mu.RUnlock()
			return ret
		}
		m.mu.RUnlock()
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.initCount > 0 {
			m.initCount--
		}
		return nvml.SUCCESS
	}
	s.ErrorStringFunc = func(r nvml.Return) string { return r.Error() }
	s.SystemGetDriverVersionFunc = func() (string, nvml.Return) {
		ret := m.begin("SystemGetDriverVersion")
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return "", ret
		}
		return s.DriverVersion, nvml.SUCCESS
	}
	s.DeviceGetCountFunc = func() (int, nvml.Return) {
		ret := m.begin("DeviceGetCount")
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		n := 0
		for _, g := range m.gpus {
			if g.present {
				n++
			}
		}
		return n, nvml.SUCCESS
	}
	s.DeviceGetHandleByIndexFunc = func(k int) (nvml.Device, nvml.Return) {
		ret := m.begin("DeviceGetHandleByIndex")
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nil, ret
		}
		for _, g := range m.gpus {
			if !g.present {
				continue
			}
			if k == 0 {
				if g.lost {
					return nil, nvml.ERROR_GPU_IS_LOST
				}
				return g.dev, nvml.SUCCESS
			}
			k--
		}
		return nil, nvml.ERROR_INVALID_ARGUMENT
	}
	s.DeviceGetHandleByUUIDFunc = func(id string) (nvml.Device, nvml.Return) {
		ret := m.begin("DeviceGetHandleByUUID")
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nil, ret
		}
		for _, g := range m.gpus {
			if g.uuid == id && g.present {
				if g.lost {
					return nil, nvml.ERROR_GPU_IS_LOST
				}
				return g.dev, nvml.SUCCESS
			}
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
}

func (m *Machine) wireDevice(g *gpu) {
	d := g.dev
	d.GetUUIDFunc = func() (string, nvml.Return) {
		ret := m.beginGPU("DeviceGetUUID", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return "", ret
		}
		return g.uuid, nvml.SUCCESS
	}
	d.GetNameFunc = func() (string, nvml.Return) {
		ret := m.beginGPU("DeviceGetName", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return "", ret
		}
		return g.model.config.Name, nvml.SUCCESS
	}
	d.GetIndexFunc = func() (int, nvml.Return) {
		ret := m.beginGPU("DeviceGetIndex", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		return m.nvmlIndexLocked(g), nvml.SUCCESS
	}
	d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		ret := m.beginGPU("DeviceGetMemoryInfo", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nvml.Memory{}, ret
		}
		used := usedBytes(g.procs)
		for _, in := range g.mig {
			used += usedBytes(in.procs)
		}
		return memory(g.model.config.MemoryMB*mib, used), nvml.SUCCESS
	}
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		ret := m.beginGPU("DeviceGetUtilizationRates", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nvml.Utilization{}, ret
		}
		// In MIG mode the driver has no whole-GPU utilization.
		if g.utilPct < 0 || g.mig != nil {
			return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
		}
		return nvml.Utilization{Gpu: uint32(g.utilPct)}, nvml.SUCCESS
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		ret := m.beginGPU("DeviceGetPowerUsage", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		return uint32(max(g.powerMW, 0)), nvml.SUCCESS
	}
	d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
		ret := m.beginGPU("DeviceGetTotalEnergyConsumption", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		if !g.energyOK {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		return uint64(max(g.energyMJ, 0)), nvml.SUCCESS
	}
	d.GetMigModeFunc = func() (int, int, nvml.Return) {
		ret := m.beginGPU("DeviceGetMigMode", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, 0, ret
		}
		mode := nvml.DEVICE_MIG_DISABLE
		if g.mig != nil {
			mode = nvml.DEVICE_MIG_ENABLE
		}
		return mode, mode, nvml.SUCCESS
	}
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) {
		ret := m.beginGPU("DeviceGetMaxMigDeviceCount", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		return g.model.totalSlices, nvml.SUCCESS
	}
	d.GetMigDeviceHandleByIndexFunc = func(k int) (nvml.Device, nvml.Return) {
		ret := m.beginGPU("DeviceGetMigDeviceHandleByIndex", g)
		defer m.mu.RUnlock()
		switch {
		case ret != nvml.SUCCESS:
			return nil, ret
		case g.mig == nil:
			return nil, nvml.ERROR_NOT_SUPPORTED
		case k < 0 || k >= g.model.totalSlices:
			return nil, nvml.ERROR_INVALID_ARGUMENT
		case k >= len(g.mig):
			return nil, nvml.ERROR_NOT_FOUND
		}
		return g.mig[k].handle, nvml.SUCCESS
	}
	d.IsMigDeviceHandleFunc = func() (bool, nvml.Return) {
		ret := m.beginGPU("DeviceIsMigDeviceHandle", g)
		defer m.mu.RUnlock()
		return false, ret
	}
	d.GetGpuInstanceProfileInfoFunc = func(id int) (nvml.GpuInstanceProfileInfo, nvml.Return) {
		ret := m.beginGPU("DeviceGetGpuInstanceProfileInfo", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nvml.GpuInstanceProfileInfo{}, ret
		}
		if id < 0 || id >= nvml.GPU_INSTANCE_PROFILE_COUNT {
			return nvml.GpuInstanceProfileInfo{}, nvml.ERROR_INVALID_ARGUMENT
		}
		info, ok := g.model.config.MIGProfiles.GpuInstanceProfiles[id]
		if !ok {
			return nvml.GpuInstanceProfileInfo{}, nvml.ERROR_NOT_SUPPORTED
		}
		return info, nvml.SUCCESS
	}
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		ret := m.beginGPU("DeviceGetComputeRunningProcesses", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nil, ret
		}
		if g.mig == nil {
			return processInfos(nil, g.procs, notAvailable, notAvailable), nvml.SUCCESS
		}
		// As real NVML does, the parent lists every instance's processes,
		// each tagged with its GPU and compute instance.
		var out []nvml.ProcessInfo
		for _, in := range g.mig {
			out = processInfos(out, in.procs, uint32(in.giID), uint32(in.ciID))
		}
		return out, nvml.SUCCESS
	}
	d.GetProcessUtilizationFunc = func(lastSeen uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		ret := m.beginGPU("DeviceGetProcessUtilization", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nil, ret
		}
		if g.mig != nil {
			return nil, nvml.ERROR_NOT_SUPPORTED
		}
		ts := g.nextSample()
		if ts <= lastSeen {
			return nil, nvml.ERROR_NOT_FOUND
		}
		var out []nvml.ProcessUtilizationSample
		for _, p := range g.procs {
			if p.SMUtil >= 0 {
				out = append(out, nvml.ProcessUtilizationSample{Pid: p.PID, TimeStamp: ts, SmUtil: uint32(p.SMUtil)})
			}
		}
		if len(out) == 0 {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return out, nvml.SUCCESS
	}
	d.GetAttributesFunc = func() (nvml.DeviceAttributes, nvml.Return) {
		ret := m.beginGPU("DeviceGetAttributes", g)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nvml.DeviceAttributes{}, ret
		}
		return nvml.DeviceAttributes{
			GpuInstanceSliceCount:     uint32(g.model.totalSlices),
			ComputeInstanceSliceCount: uint32(g.model.totalSlices),
			MemorySizeMB:              g.model.config.MemoryMB,
		}, nvml.SUCCESS
	}
	// MIG is configured through the Machine only; the mock server's own
	// instance bookkeeping would disagree with it, so it is switched off.
	d.SetMigModeFunc = func(int) (nvml.Return, nvml.Return) {
		return nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED
	}
	d.CreateGpuInstanceFunc = func(*nvml.GpuInstanceProfileInfo) (nvml.GpuInstance, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	d.CreateGpuInstanceWithPlacementFunc = func(*nvml.GpuInstanceProfileInfo, *nvml.GpuInstancePlacement) (nvml.GpuInstance, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetGpuInstancesFunc = func(*nvml.GpuInstanceProfileInfo) ([]nvml.GpuInstance, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
}
