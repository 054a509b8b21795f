package sim

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// gpuHandle is a physical GPU's nvml.Device: the mock server's device
// underneath, with the calls the Machine answers defined here (see
// library). One per GPU, so every lookup returns the same handle.
type gpuHandle struct {
	*server.Device
	m *Machine
	g *gpu
}

// newGPUHandle wraps the mock server's device for g. MIG is configured
// through the Machine only; the mock server's own instance bookkeeping
// would disagree with it, so its MIG calls are switched off.
func (m *Machine) newGPUHandle(g *gpu, dev *server.Device) *gpuHandle {
	dev.SetMigModeFunc = func(int) (nvml.Return, nvml.Return) {
		return nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED
	}
	dev.CreateGpuInstanceFunc = func(*nvml.GpuInstanceProfileInfo) (nvml.GpuInstance, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	dev.CreateGpuInstanceWithPlacementFunc = func(*nvml.GpuInstanceProfileInfo, *nvml.GpuInstancePlacement) (nvml.GpuInstance, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	dev.GetGpuInstancesFunc = func(*nvml.GpuInstanceProfileInfo) ([]nvml.GpuInstance, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	return &gpuHandle{Device: dev, m: m, g: g}
}

func (h *gpuHandle) GetUUID() (string, nvml.Return) {
	return answer(h.m, h.m.beginGPU("DeviceGetUUID", h.g), func() string { return h.g.uuid })
}

func (h *gpuHandle) GetName() (string, nvml.Return) {
	return answer(h.m, h.m.beginGPU("DeviceGetName", h.g), func() string { return h.g.model.config.Name })
}

func (h *gpuHandle) GetIndex() (int, nvml.Return) {
	return answer(h.m, h.m.beginGPU("DeviceGetIndex", h.g), func() int { return h.m.nvmlIndexLocked(h.g) })
}

func (h *gpuHandle) GetMemoryInfo() (nvml.Memory, nvml.Return) {
	return answer(h.m, h.m.beginGPU("DeviceGetMemoryInfo", h.g), func() nvml.Memory {
		used := usedBytes(h.g.procs)
		for _, in := range h.g.mig {
			used += usedBytes(in.procs)
		}
		return memory(h.g.model.config.MemoryMB*mib, used)
	})
}

func (h *gpuHandle) GetUtilizationRates() (nvml.Utilization, nvml.Return) {
	ret := h.m.beginGPU("DeviceGetUtilizationRates", h.g)
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return nvml.Utilization{}, ret
	}
	// In MIG mode the driver has no whole-GPU utilization.
	if h.g.utilPct < 0 || h.g.mig != nil {
		return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
	}
	return nvml.Utilization{Gpu: uint32(h.g.utilPct)}, nvml.SUCCESS
}

func (h *gpuHandle) GetPowerUsage() (uint32, nvml.Return) {
	return answer(h.m, h.m.beginGPU("DeviceGetPowerUsage", h.g), func() uint32 { return uint32(max(h.g.powerMW, 0)) })
}

func (h *gpuHandle) GetTotalEnergyConsumption() (uint64, nvml.Return) {
	ret := h.m.beginGPU("DeviceGetTotalEnergyConsumption", h.g)
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return 0, ret
	}
	if !h.g.energyOK {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	return uint64(max(h.g.energyMJ, 0)), nvml.SUCCESS
}

func (h *gpuHandle) GetMigMode() (int, int, nvml.Return) {
	ret := h.m.beginGPU("DeviceGetMigMode", h.g)
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return 0, 0, ret
	}
	mode := nvml.DEVICE_MIG_DISABLE
	if h.g.mig != nil {
		mode = nvml.DEVICE_MIG_ENABLE
	}
	return mode, mode, nvml.SUCCESS
}

func (h *gpuHandle) GetMaxMigDeviceCount() (int, nvml.Return) {
	return answer(h.m, h.m.beginGPU("DeviceGetMaxMigDeviceCount", h.g), func() int { return h.g.model.totalSlices })
}

func (h *gpuHandle) GetMigDeviceHandleByIndex(k int) (nvml.Device, nvml.Return) {
	g := h.g
	ret := h.m.beginGPU("DeviceGetMigDeviceHandleByIndex", g)
	defer h.m.mu.RUnlock()
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

func (h *gpuHandle) IsMigDeviceHandle() (bool, nvml.Return) {
	ret := h.m.beginGPU("DeviceIsMigDeviceHandle", h.g)
	defer h.m.mu.RUnlock()
	return false, ret
}

func (h *gpuHandle) GetGpuInstanceProfileInfo(id int) (nvml.GpuInstanceProfileInfo, nvml.Return) {
	ret := h.m.beginGPU("DeviceGetGpuInstanceProfileInfo", h.g)
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return nvml.GpuInstanceProfileInfo{}, ret
	}
	if id < 0 || id >= nvml.GPU_INSTANCE_PROFILE_COUNT {
		return nvml.GpuInstanceProfileInfo{}, nvml.ERROR_INVALID_ARGUMENT
	}
	info, ok := h.g.model.config.MIGProfiles.GpuInstanceProfiles[id]
	if !ok {
		return nvml.GpuInstanceProfileInfo{}, nvml.ERROR_NOT_SUPPORTED
	}
	return info, nvml.SUCCESS
}

func (h *gpuHandle) GetComputeRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	g := h.g
	ret := h.m.beginGPU("DeviceGetComputeRunningProcesses", g)
	defer h.m.mu.RUnlock()
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

// GetProcessUtilization answers samples newer than lastSeen; each call
// makes a newer one (see gpu.sampleTick).
func (h *gpuHandle) GetProcessUtilization(lastSeen uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
	g := h.g
	ret := h.m.beginGPU("DeviceGetProcessUtilization", g)
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return nil, ret
	}
	if g.mig != nil {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	if g.samples != nil {
		return bufferedSamples(g.samples, lastSeen)
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

// bufferedSamples answers GetProcessUtilization from a set buffer (see
// Machine.SetProcessSamples).
func bufferedSamples(buf []nvml.ProcessUtilizationSample, lastSeen uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
	var out []nvml.ProcessUtilizationSample
	newer := false
	for _, s := range buf {
		switch {
		case s.TimeStamp == 0:
			out = append(out, s)
		case s.TimeStamp > lastSeen:
			out = append(out, s)
			newer = true
		}
	}
	if !newer {
		return nil, nvml.ERROR_NOT_FOUND
	}
	return out, nvml.SUCCESS
}

func (h *gpuHandle) GetAttributes() (nvml.DeviceAttributes, nvml.Return) {
	ret := h.m.beginGPU("DeviceGetAttributes", h.g)
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return nvml.DeviceAttributes{}, ret
	}
	return nvml.DeviceAttributes{
		GpuInstanceSliceCount:     uint32(h.g.model.totalSlices),
		ComputeInstanceSliceCount: uint32(h.g.model.totalSlices),
		MemorySizeMB:              h.g.model.config.MemoryMB,
	}, nvml.SUCCESS
}
