// Package device holds what a collector observed on a node's GPUs at one
// instant: the plain-struct domain model between the device layer (NVML, or
// the simulator behind the same nvml.Interface) and attribution.
//
// It must never import NVML or any higher layer: it is data only.
package device

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotEnumerated is a Device.Err: a GPU seen in an earlier cycle is no
// longer enumerated by the driver (fell off the bus, removed, driver
// reloaded without it). Unlike a GPU that is listed but unreadable, it is
// not part of the node's inventory while it is gone.
var ErrNotEnumerated = errors.New("GPU no longer enumerated by NVML")

// Unknown marks an integer reading that the device does not report
// (ERROR_NOT_SUPPORTED) or that was not sampled this cycle.
const Unknown = -1

// Snapshot is one collection cycle's view of every GPU on the node.
type Snapshot struct {
	// Time is when the cycle started, on the agent's clock.
	Time    time.Time
	Devices []Device
}

// Device is one physical GPU.
type Device struct {
	Index            int
	UUID             string // "GPU-..."
	Model            string // e.g. "NVIDIA H100 80GB HBM3"
	MemoryTotalBytes uint64
	MemoryUsedBytes  uint64
	// UtilizationPercent is the GPU's SM utilization, 0-100, or Unknown.
	UtilizationPercent int
	// PowerMilliwatts is the current board power draw, or Unknown.
	PowerMilliwatts int64
	// EnergyMillijoules is the device's total energy counter since the driver
	// loaded (monotonic), or Unknown.
	EnergyMillijoules int64
	MIGEnabled        bool
	// Instances are the MIG instances when MIGEnabled; Processes is then empty.
	Instances []Instance
	// Processes are the compute processes on the whole GPU when !MIGEnabled.
	Processes []Process
	// Err is set when the device could not be read this cycle (GPU_IS_LOST,
	// fell off the bus, vanished from enumeration): its time is a gap, never
	// idle. The identity fields above keep their last known values.
	Err error `json:"-"`
}

// Instance is one MIG instance (a GPU instance with one compute instance; a
// GPU instance split into several compute instances yields one Instance each).
type Instance struct {
	UUID              string // "MIG-..."
	GPUInstanceID     int
	ComputeInstanceID int
	Profile           string // e.g. "1g.10gb"
	// Slices is the GPU instance's slice count and TotalSlices the parent
	// GPU's (7 on A100/H100): the instance is Slices/TotalSlices of the GPU.
	Slices      int
	TotalSlices int
	MemoryBytes uint64
	Processes   []Process
}

// Process is one compute process seen by the driver. PIDs are host PIDs.
type Process struct {
	PID             uint32
	UsedMemoryBytes uint64
	// SMUtil is the process's recent SM utilization, 0-100, or Unknown
	// (no new samples, MIG, unsupported): the mean of SMWeight's samples.
	SMUtil int
	// SMWeight is the sum of the process's SM utilization over the
	// distinct samples NVML took since the previous cycle (one per sample
	// timestamp); 0 when it has none. Under time-slicing NVML samples the
	// process that holds the GPU, so a process that ran more has more
	// samples: this, not the mean, weighs a shared GPU's split.
	SMWeight int64
}

// Unit is what the meter meters: a whole GPU not in MIG mode, or one MIG
// instance. Every millisecond of a unit is a tenant's, idle, or a gap.
type Unit struct {
	UUID       string // GPU-... or MIG-...
	ParentUUID string // the physical GPU's UUID (== UUID for a whole GPU)
	Model      string
	Profile    string // MIG profile, "" for a whole GPU
	// SliceNum/SliceDen is the unit's share of the physical GPU: 1/1 for a
	// whole GPU, e.g. 1/7 for a 1g.10gb instance on an H100.
	SliceNum, SliceDen int
	Processes          []Process
	UtilizationPercent int   // Unknown for MIG instances
	EnergyMillijoules  int64 // Unknown for MIG instances
	Err                error `json:"-"` // non-nil: this unit's time is a gap
}

// Units flattens the snapshot into metered units, in device order.
// A device in MIG mode yields one unit per instance; a lost MIG device
// yields its last known instances, each with the device's error.
func (s Snapshot) Units() []Unit {
	n := 0
	for i := range s.Devices {
		if s.Devices[i].MIGEnabled {
			n += len(s.Devices[i].Instances)
		} else {
			n++
		}
	}
	units := make([]Unit, 0, n)
	for i := range s.Devices {
		d := &s.Devices[i]
		if !d.MIGEnabled {
			units = append(units, Unit{
				UUID: d.UUID, ParentUUID: d.UUID, Model: d.Model,
				SliceNum: 1, SliceDen: 1,
				Processes:          d.Processes,
				UtilizationPercent: d.UtilizationPercent,
				EnergyMillijoules:  d.EnergyMillijoules,
				Err:                d.Err,
			})
			continue
		}
		for j := range d.Instances {
			in := &d.Instances[j]
			units = append(units, Unit{
				UUID: in.UUID, ParentUUID: d.UUID, Model: d.Model,
				Profile:  in.Profile,
				SliceNum: in.Slices, SliceDen: in.TotalSlices,
				Processes:          in.Processes,
				UtilizationPercent: Unknown,
				EnergyMillijoules:  Unknown,
				Err:                d.Err,
			})
		}
	}
	return units
}

// String is for logs and test failures.
func (u Unit) String() string {
	if u.Profile == "" {
		return u.UUID
	}
	return fmt.Sprintf("%s(%s on %s)", u.UUID, u.Profile, u.ParentUUID)
}
