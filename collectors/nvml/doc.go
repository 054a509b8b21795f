// Package nvml reads the node's GPUs through NVML (go-nvml's
// nvml.Interface) into a device.Snapshot: per GPU its identity, memory,
// utilization, power and energy, its MIG instances with their profile and
// share of the GPU, and the compute processes on every unit. The same code
// reads the real library (Open), go-nvml's mock servers and the simulated
// Machine of collectors/sim.
//
// It must never invent readings: what NVML does not report is
// device.Unknown, and a GPU that cannot be read is reported with Err (a
// gap for the meter), never as idle. It must never call NVML after a
// failed Init, and Collect must never panic.
//
// NVML traps handled here:
//
//   - No driver. go-nvml dlopens libnvidia-ml.so.1 in Init, which returns
//     ERROR_LIBRARY_NOT_FOUND (or DRIVER_NOT_LOADED, NO_PERMISSION, ...).
//     Start turns that into an error that says what to check and wraps the
//     nvml.Return (errors.Is works). After a failed Init any other NVML
//     call, Shutdown included, can kill the process with a symbol lookup
//     error, so the collector calls nothing more: Collect returns Start's
//     error and Close is a no-op.
//   - A lost GPU (Xid 79, fallen off the bus: ERROR_GPU_IS_LOST) or any
//     failing read is confined to that GPU: Device.Err is set, the identity
//     kept from the last good cycle (keyed by UUID, and by NVML index for
//     when even the handle or UUID cannot be read), and the other GPUs are
//     read as usual. A GPU seen before that is no longer enumerated at all
//     is reported with its last identity and ErrNotEnumerated, so its time
//     becomes a gap rather than vanishing. A GPU never read successfully
//     (lost before the agent's first read) has no identity of NVML's: with
//     Options.DriverDir (/proc/driver/nvidia on a node) it is reported by
//     the identity the kernel driver gives it (gpus/*/information: UUID
//     and model), with its read error, from the first cycle on, so its
//     time is a device_lost gap from the first window; without, or if the
//     driver does not list it, it is left out (and logged).
//   - MIG reconfiguration at run time invalidates MIG handles, so MIG
//     instances are enumerated afresh every cycle: every slot from 0 to
//     GetMaxMigDeviceCount-1, skipping empty slots (NOT_FOUND,
//     INVALID_ARGUMENT), since slots can be sparse.
//   - NVML gives a MIG handle no profile name, and the memory part of the
//     name is not the instance's memory in GB (an A100 80GB 7g instance
//     has 78.5 GiB and is "7g.80gb"). ProfileName derives it with the rule
//     of NVIDIA's go-nvlib from the slice count, the instance's memory and
//     the parent GPU's memory. The share's denominator is the slice count
//     of the GPU's largest instance profile (7 on A100/H100/H200).
//   - ERROR_NOT_SUPPORTED is a normal answer (energy on older boards,
//     utilization in MIG mode, MIG on boards without it): device.Unknown,
//     not an error. Any other failure of utilization, power or energy,
//     except GPU_IS_LOST, is Unknown too: those readings do not decide
//     whose time it is, so they never turn a GPU's time into a gap.
//   - GetProcessUtilization answers NOT_FOUND when there is no sample newer
//     than the timestamp asked for: not an error, the processes' SMUtil is
//     Unknown. The newest timestamp seen is kept per GPU so each cycle gets
//     only new samples. A process's SMWeight is the sum of its new
//     samples' SM utilization, each (PID, timestamp) counted once and
//     clamped to 0-100 (garbage values have been seen), and its SMUtil
//     their mean; a process without new samples has weight 0 and Unknown
//     SMUtil. Under time-slicing NVML samples the process that holds the
//     GPU, so the sum follows how long each process held it, which the
//     mean does not (docs/hardware.md). It is not supported on MIG
//     handles, so MIG processes have Unknown SMUtil and weight 0.
//   - UUIDs are reported in their canonical form (protocol.CanonicalGPUUUID,
//     CanonicalMIGUUID: lower-case, trimmed), the authority's key, so that
//     records and the inventory name a unit alike. A GPU or MIG instance
//     whose UUID has no canonical form is a read error, never metered
//     under a name the authority would refuse.
//   - Every NVML call is made every poll: nothing tells the collector that
//     a GPU was replaced or re-partitioned. What it keeps between polls
//     are the strings it derives (canonical UUIDs, profile names), each
//     beside the NVML answer it came from and used again only while NVML
//     answers the same, and one block each for a snapshot's instances and
//     processes, sized by the poll before (reuse.go). An unchanged node's
//     poll then allocates a handful of objects of its own, whatever its
//     number of MIG instances; NVML's own answers (process lists) still
//     allocate in go-nvml.
//   - NVML reports host PIDs, whatever PID namespace the agent runs in;
//     attribution reads the host's /proc. A process that starts and ends
//     between two polls is never seen.
package nvml
