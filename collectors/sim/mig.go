package sim

import (
	"slices"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// sampleEpochUS is the first process-utilization sample's timestamp
// (microseconds, as NVML's); later samples are one second apart.
const sampleEpochUS = 1_700_000_000_000_000

func (g *gpu) nextSample() uint64 {
	return sampleEpochUS + g.sampleTick.Add(1)*1_000_000
}

// beginMIG is begin plus the instance's state: the parent's loss applies to
// its instances, and a handle of an instance removed by reconfiguration is
// invalid, as NVML's are.
func (m *Machine) beginMIG(call string, g *gpu, in *migInstance) nvml.Return {
	if ret := m.beginGPU(call, g); ret != nvml.SUCCESS {
		return ret
	}
	if !slices.Contains(g.mig, in) {
		return nvml.ERROR_INVALID_ARGUMENT
	}
	return nvml.SUCCESS
}

// newMIGHandle builds the MIG device handle of one instance. Calls the
// driver does not answer for MIG handles (utilization, power, energy,
// process utilization) answer NOT_SUPPORTED; the mock panics on any Func
// left nil, which would show a collector calling something unexpected.
func (m *Machine) newMIGHandle(g *gpu, in *migInstance) *mock.Device {
	h := &mock.Device{}
	h.GetUUIDFunc = func() (string, nvml.Return) {
		ret := m.beginMIG("DeviceGetUUID", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return "", ret
		}
		return in.uuid, nvml.SUCCESS
	}
	h.GetNameFunc = func() (string, nvml.Return) {
		ret := m.beginMIG("DeviceGetName", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return "", ret
		}
		return g.model.config.Name + " MIG " + in.profile, nvml.SUCCESS
	}
	h.IsMigDeviceHandleFunc = func() (bool, nvml.Return) {
		ret := m.beginMIG("DeviceIsMigDeviceHandle", g, in)
		defer m.mu.RUnlock()
		return ret == nvml.SUCCESS, ret
	}
	h.GetDeviceHandleFromMigDeviceHandleFunc = func() (nvml.Device, nvml.Return) {
		ret := m.beginMIG("DeviceGetDeviceHandleFromMigDeviceHandle", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nil, ret
		}
		return g.dev, nvml.SUCCESS
	}
	h.GetGpuInstanceIdFunc = func() (int, nvml.Return) {
		ret := m.beginMIG("DeviceGetGpuInstanceId", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		return in.giID, nvml.SUCCESS
	}
	h.GetComputeInstanceIdFunc = func() (int, nvml.Return) {
		ret := m.beginMIG("DeviceGetComputeInstanceId", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return 0, ret
		}
		return in.ciID, nvml.SUCCESS
	}
	h.GetAttributesFunc = func() (nvml.DeviceAttributes, nvml.Return) {
		ret := m.beginMIG("DeviceGetAttributes", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nvml.DeviceAttributes{}, ret
		}
		return nvml.DeviceAttributes{
			MultiprocessorCount:       in.info.MultiprocessorCount,
			SharedCopyEngineCount:     in.info.CopyEngineCount,
			SharedDecoderCount:        in.info.DecoderCount,
			SharedEncoderCount:        in.info.EncoderCount,
			SharedJpegCount:           in.info.JpegCount,
			SharedOfaCount:            in.info.OfaCount,
			GpuInstanceSliceCount:     in.info.SliceCount,
			ComputeInstanceSliceCount: in.info.SliceCount,
			MemorySizeMB:              in.info.MemorySizeMB,
		}, nvml.SUCCESS
	}
	h.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		ret := m.beginMIG("DeviceGetMemoryInfo", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nvml.Memory{}, ret
		}
		return memory(in.info.MemorySizeMB*mib, usedBytes(in.procs)), nvml.SUCCESS
	}
	h.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		ret := m.beginMIG("DeviceGetComputeRunningProcesses", g, in)
		defer m.mu.RUnlock()
		if ret != nvml.SUCCESS {
			return nil, ret
		}
		return processInfos(nil, in.procs, uint32(in.giID), uint32(in.ciID)), nvml.SUCCESS
	}
	h.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		return nil, m.unsupportedOnMIG("DeviceGetProcessUtilization", g, in)
	}
	h.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{}, m.unsupportedOnMIG("DeviceGetUtilizationRates", g, in)
	}
	h.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		return 0, m.unsupportedOnMIG("DeviceGetPowerUsage", g, in)
	}
	h.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
		return 0, m.unsupportedOnMIG("DeviceGetTotalEnergyConsumption", g, in)
	}
	h.GetMigModeFunc = func() (int, int, nvml.Return) {
		return 0, 0, m.unsupportedOnMIG("DeviceGetMigMode", g, in)
	}
	h.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) {
		return 0, m.unsupportedOnMIG("DeviceGetMaxMigDeviceCount", g, in)
	}
	h.GetMigDeviceHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) {
		return nil, m.unsupportedOnMIG("DeviceGetMigDeviceHandleByIndex", g, in)
	}
	h.GetIndexFunc = func() (int, nvml.Return) {
		return 0, m.unsupportedOnMIG("DeviceGetIndex", g, in)
	}
	return h
}

// unsupportedOnMIG answers a call NVML does not support on MIG handles,
// after the checks every call gets.
func (m *Machine) unsupportedOnMIG(call string, g *gpu, in *migInstance) nvml.Return {
	ret := m.beginMIG(call, g, in)
	defer m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return ret
	}
	return nvml.ERROR_NOT_SUPPORTED
}

func usedBytes(procs []device.Process) uint64 {
	var n uint64
	for _, p := range procs {
		n += p.UsedMemoryBytes
	}
	return n
}

func memory(total, used uint64) nvml.Memory {
	used = min(used, total)
	return nvml.Memory{Total: total, Used: used, Free: total - used}
}

// processInfos appends procs to out as NVML reports them.
func processInfos(out []nvml.ProcessInfo, procs []device.Process, gi, ci uint32) []nvml.ProcessInfo {
	for _, p := range procs {
		out = append(out, nvml.ProcessInfo{Pid: p.PID, UsedGpuMemory: p.UsedMemoryBytes,
			GpuInstanceId: gi, ComputeInstanceId: ci})
	}
	return out
}
