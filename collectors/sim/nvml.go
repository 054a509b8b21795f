package sim

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// notAvailable is what NVML puts in ProcessInfo's GPU/compute instance ids
// for a process on a GPU that is not in MIG mode.
const notAvailable = ^uint32(0)

const mib = 1 << 20

// The Machine's NVML is three wrapper types over go-nvml's mock types:
// library (over server.Server), gpuHandle (over server.Device) and
// migHandle (over mock.Device). Every call the NVML collector makes, and
// every call the Machine programs, is a method of the wrapper, so it
// shadows the embedded mock's method of the same name; the generated mock
// methods append each call's arguments to a slice that is never cleared,
// which over days of polling is an unbounded leak. Any other call reaches
// the mock underneath: the mock server's own answer, or a panic for a Func
// left nil, which shows a caller using something the Machine does not
// simulate.
var (
	_ nvml.Interface = (*library)(nil)
	_ nvml.Device    = (*gpuHandle)(nil)
	_ nvml.Device    = (*migHandle)(nil)
)

// library is the Machine's nvml.Interface.
type library struct {
	*server.Server
	m *Machine
}

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

// answer is the reply to a call that only reads: ret is what begin,
// beginGPU or beginMIG returned (the read lock is held either way, and
// answer releases it); when ret is SUCCESS, value computes the result
// under the lock.
func answer[T any](m *Machine, ret nvml.Return, value func() T) (T, nvml.Return) {
	defer m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		var zero T
		return zero, ret
	}
	return value(), nvml.SUCCESS
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

// Init fails with the error set by SetInitError; after that, every call
// but Init panics until an Init succeeds.
func (l *library) Init() nvml.Return {
	m := l.m
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

func (l *library) Shutdown() nvml.Return {
	m := l.m
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

func (l *library) ErrorString(r nvml.Return) string { return r.Error() }

func (l *library) SystemGetDriverVersion() (string, nvml.Return) {
	return answer(l.m, l.m.begin("SystemGetDriverVersion"), func() string { return l.DriverVersion })
}

func (l *library) DeviceGetCount() (int, nvml.Return) {
	return answer(l.m, l.m.begin("DeviceGetCount"), func() int {
		n := 0
		for _, g := range l.m.gpus {
			if g.present {
				n++
			}
		}
		return n
	})
}

// DeviceGetHandleByIndex counts only present GPUs, so a removed GPU shifts
// the indices of those after it, as the real driver's enumeration does.
func (l *library) DeviceGetHandleByIndex(k int) (nvml.Device, nvml.Return) {
	return l.handleOf("DeviceGetHandleByIndex", nvml.ERROR_INVALID_ARGUMENT, func(*gpu) bool {
		k--
		return k < 0
	})
}

func (l *library) DeviceGetHandleByUUID(id string) (nvml.Device, nvml.Return) {
	return l.handleOf("DeviceGetHandleByUUID", nvml.ERROR_NOT_FOUND, func(g *gpu) bool { return g.uuid == id })
}

// handleOf answers a call that looks a GPU up: the handle of the first
// present GPU that match accepts (match sees present GPUs only, in
// order), GPU_IS_LOST while that GPU is lost, or none when no GPU matches.
func (l *library) handleOf(call string, none nvml.Return, match func(*gpu) bool) (nvml.Device, nvml.Return) {
	ret := l.m.begin(call)
	defer l.m.mu.RUnlock()
	if ret != nvml.SUCCESS {
		return nil, ret
	}
	for _, g := range l.m.gpus {
		if !g.present || !match(g) {
			continue
		}
		if g.lost {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return g.handle, nvml.SUCCESS
	}
	return nil, none
}
