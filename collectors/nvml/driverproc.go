package nvml

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// DriverProcDir is where the NVIDIA kernel driver describes each GPU it
// bound, one gpus/<PCI bus id>/information file per GPU, whether or not
// NVML can still talk to it.
const DriverProcDir = "/proc/driver/nvidia"

// driverGPUs reads the identity (UUID, model) of every GPU the kernel
// driver lists under dir: a GPU that fell off the bus before the
// collector's first read has no identity NVML will give, but the driver
// still names it. A missing dir is no GPU, not an error.
func driverGPUs(dir string) ([]device.Device, error) {
	files, err := filepath.Glob(filepath.Join(dir, "gpus", "*", "information"))
	if err != nil {
		return nil, err
	}
	var out []device.Device
	for _, f := range files {
		d, err := readDriverInfo(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // unbound between the glob and the read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// readDriverInfo parses one information file:
//
//	Model:           NVIDIA H100 80GB HBM3
//	IRQ:             147
//	GPU UUID:        GPU-5c9d0a8e-1f3b-4c7e-9a2d-6e8f0b1c2d3e
//	...
func readDriverInfo(path string) (device.Device, error) {
	f, err := os.Open(path)
	if err != nil {
		return device.Device{}, err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to flush
	d := device.Device{Index: -1, UtilizationPercent: device.Unknown,
		PowerMilliwatts: device.Unknown, EnergyMillijoules: device.Unknown}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Model":
			d.Model = strings.TrimSpace(v)
		case "GPU UUID":
			if d.UUID, err = protocol.CanonicalGPUUUID(strings.TrimSpace(v)); err != nil {
				return d, fmt.Errorf("%s: GPU UUID: %w", path, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("%s: %w", path, err)
	}
	if d.UUID == "" {
		return d, fmt.Errorf("%s: no GPU UUID line", path)
	}
	return d, nil
}

// reportUnnamed reports GPUs NVML enumerates but could not read and the
// collector never read (unnamed: one read error per such index) by the
// identity the kernel driver gives them: those it lists that are neither
// reported this cycle nor known by NVML's reading. Each is reported with
// its index's error, so its time is a device_lost gap from the agent's
// first read on instead of being left out until it reads; up to one per
// unnamed index, in UUID order (NVML cannot say which index is which).
func (c *Collector) reportUnnamed(devs []device.Device, unnamed []error, reported map[string]bool) []device.Device {
	if len(unnamed) == 0 || c.driverDir == "" {
		return devs
	}
	gpus, err := driverGPUs(c.driverDir)
	if err != nil {
		c.log.Warn("cannot read the driver's GPU list for unreadable GPUs", "dir", c.driverDir, "err", err)
	}
	for _, d := range gpus {
		if _, known := c.known[d.UUID]; !known && !reported[d.UUID] {
			c.known[d.UUID], c.driverNamed[d.UUID] = d, true
			c.log.Warn("GPU unreadable since the agent started, named by the kernel driver: its time is a gap until it reads",
				"gpu", d.UUID, "model", d.Model, "dir", c.driverDir)
		}
	}
	for _, uuid := range slices.Sorted(maps.Keys(c.driverNamed)) {
		if len(unnamed) == 0 {
			break
		}
		if reported[uuid] {
			continue
		}
		d := c.known[uuid]
		d.Err = fmt.Errorf("GPU %s (named by the kernel driver): %w", uuid, unnamed[0])
		unnamed = unnamed[1:]
		reported[uuid] = true
		devs = append(devs, d)
	}
	return devs
}
