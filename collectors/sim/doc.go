// Package sim is a node of simulated NVIDIA GPUs: a Machine answers the
// nvml.Interface the NVML collector reads, built on go-nvml's mock server
// types (pkg/nvml/mock/server, with the H100/A100/H200 configs and their
// MIG profile tables), and is programmed through plain setters: MIG
// layouts, processes per GPU or MIG instance, utilization, power and
// energy, lost GPUs, and a failing Init.
//
// Its one job is to behave like NVML where the collector relies on it:
//   - UUIDs are deterministic (name-based from the GPU index, or given), so
//     records and golden files are reproducible; a MIG reconfiguration
//     gives the new instances new UUIDs, and old MIG handles go invalid.
//   - A lost GPU answers ERROR_GPU_IS_LOST on every call, its MIG handles
//     too; a removed GPU shifts the indices of the GPUs after it.
//   - The parent of MIG instances lists all their processes tagged with
//     GPU/compute instance ids; process utilization, utilization, power and
//     energy are NOT_SUPPORTED on MIG handles; GetProcessUtilization
//     answers NOT_FOUND when no process has a sample.
//   - After a failed Init any other call panics, standing in for the real
//     library's crash on a symbol lookup (and is counted, in case a caller
//     recovers).
//
// It must never be used to meter real GPUs, never keeps package-level
// state (two Machines are independent), and never accumulates per-call
// state: a simulated daemon polls for days. go-nvml's generated mocks
// record every call's arguments in slices that are never cleared, so every
// call the Machine answers (all those the NVML collector makes) is a method
// of a wrapper type over the mock server, device and MIG handle, shadowing
// the mock's recording method. The mock types stay underneath for
// everything else: the mock server answers what it programs itself (PCI
// info, brand), and any other call panics on the mock's nil Func, which
// shows a collector calling something it was not expected to.
package sim
