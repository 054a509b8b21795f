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

// migHandle is one MIG instance's nvml.Device: a bare go-nvml mock device
// underneath, with the calls the Machine answers defined here (see
// library). Its mock Funcs are all nil, so any other call panics, which
// would show a collector calling something unexpected. Calls the driver
// does not answer for MIG handles (utilization, power, energy, process
// utilization) answer NOT_SUPPORTED.
type migHandle struct {
	*mock.Device
	m  *Machine
	g  *gpu
	in *migInstance
}

func (m *Machine) newMIGHandle(g *gpu, in *migInstance) *migHandle {
	return &migHandle{Device: &mock.Device{}, m: m, g: g, in: in}
}

// begin is Machine.beginMIG for this handle; the caller must RUnlock.
func (h *migHandle) begin(call string) nvml.Return {
	return h.m.beginMIG(call, h.g, h.in)
}

func (h *migHandle) GetUUID() (string, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetUUID"), func() string { return h.in.uuid })
}

func (h *migHandle) GetName() (string, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetName"), func() string { return h.g.model.config.Name + " MIG " + h.in.profile })
}

func (h *migHandle) IsMigDeviceHandle() (bool, nvml.Return) {
	ret := h.begin("DeviceIsMigDeviceHandle")
	defer h.m.mu.RUnlock()
	return ret == nvml.SUCCESS, ret
}

func (h *migHandle) GetDeviceHandleFromMigDeviceHandle() (nvml.Device, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetDeviceHandleFromMigDeviceHandle"), func() nvml.Device { return h.g.handle })
}

func (h *migHandle) GetGpuInstanceId() (int, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetGpuInstanceId"), func() int { return h.in.giID })
}

func (h *migHandle) GetComputeInstanceId() (int, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetComputeInstanceId"), func() int { return h.in.ciID })
}

func (h *migHandle) GetAttributes() (nvml.DeviceAttributes, nvml.Return) {
	ret := h.begin("DeviceGetAttributes")
	defer h.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return nvml.DeviceAttributes{}, ret
	}
	info := h.in.info
	return nvml.DeviceAttributes{
		MultiprocessorCount:       info.MultiprocessorCount,
		SharedCopyEngineCount:     info.CopyEngineCount,
		SharedDecoderCount:        info.DecoderCount,
		SharedEncoderCount:        info.EncoderCount,
		SharedJpegCount:           info.JpegCount,
		SharedOfaCount:            info.OfaCount,
		GpuInstanceSliceCount:     info.SliceCount,
		ComputeInstanceSliceCount: info.SliceCount,
		MemorySizeMB:              info.MemorySizeMB,
	}, nvml.SUCCESS
}

func (h *migHandle) GetMemoryInfo() (nvml.Memory, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetMemoryInfo"), func() nvml.Memory { return memory(h.in.info.MemorySizeMB*mib, usedBytes(h.in.procs)) })
}

func (h *migHandle) GetComputeRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	return answer(h.m, h.begin("DeviceGetComputeRunningProcesses"), func() []nvml.ProcessInfo { return processInfos(nil, h.in.procs, uint32(h.in.giID), uint32(h.in.ciID)) })
}

func (h *migHandle) GetProcessUtilization(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
	return nil, h.unsupported("DeviceGetProcessUtilization")
}

func (h *migHandle) GetUtilizationRates() (nvml.Utilization, nvml.Return) {
	return nvml.Utilization{}, h.unsupported("DeviceGetUtilizationRates")
}

func (h *migHandle) GetPowerUsage() (uint32, nvml.Return) {
	return 0, h.unsupported("DeviceGetPowerUsage")
}

func (h *migHandle) GetTotalEnergyConsumption() (uint64, nvml.Return) {
	return 0, h.unsupported("DeviceGetTotalEnergyConsumption")
}

func (h *migHandle) GetMigMode() (int, int, nvml.Return) {
	return 0, 0, h.unsupported("DeviceGetMigMode")
}

func (h *migHandle) GetMaxMigDeviceCount() (int, nvml.Return) {
	return 0, h.unsupported("DeviceGetMaxMigDeviceCount")
}

func (h *migHandle) GetMigDeviceHandleByIndex(int) (nvml.Device, nvml.Return) {
	return nil, h.unsupported("DeviceGetMigDeviceHandleByIndex")
}

func (h *migHandle) GetIndex() (int, nvml.Return) {
	return 0, h.unsupported("DeviceGetIndex")
}

// unsupported answers a call NVML does not support on MIG handles, after
// the checks every call gets.
func (h *migHandle) unsupported(call string) nvml.Return {
	ret := h.begin(call)
	defer h.m.mu.RUnlock()
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
	out = slices.Grow(out, len(procs)) // one allocation per list, as NVML's answer is one array
	for _, p := range procs {
		out = append(out, nvml.ProcessInfo{Pid: p.PID, UsedGpuMemory: p.UsedMemoryBytes,
			GpuInstanceId: gi, ComputeInstanceId: ci})
	}
	return out
}
