package sim

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
)

// DefaultModel is the model of a GPUSpec with an empty Model.
const DefaultModel = "H100-SXM5-80GB"

// model is one GPU model the Machine can simulate: go-nvml's mock config
// (name, memory, MIG profile table) plus the profile names derived from it.
type model struct {
	config gpus.Config
	// profiles maps a MIG profile name ("1g.10gb") to its GPU instance
	// profile. Only profiles that a layout may name are here.
	profiles map[string]nvml.GpuInstanceProfileInfo
	// totalSlices is the largest profile's slice count (7 on A100/H100/H200).
	totalSlices int
}

// models are built per Machine (not package state) so that no caller can
// mutate another Machine's tables.
func models() map[string]*model {
	a100x40 := gpus.A100_SXM4_40GB
	// The mock names this one "Mock NVIDIA ..."; the real driver does not.
	a100x40.Name = "NVIDIA A100-SXM4-40GB"
	// go-nvml's mock H200 table gives instances memory sizes no driver
	// reports (1g: 18432 MB, more than an eighth of the GPU), under which
	// the driver's naming rule would call both 1-slice profiles "1g.35gb".
	// Driver-like sizes keep the names the table's comments give.
	h200 := gpus.H200_SXM5_141GB
	h200.MIGProfiles.GpuInstanceProfiles = maps.Clone(h200.MIGProfiles.GpuInstanceProfiles)
	for id, mb := range map[int]uint64{
		nvml.GPU_INSTANCE_PROFILE_1_SLICE:      17920,
		nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1: 17920,
		nvml.GPU_INSTANCE_PROFILE_3_SLICE:      71680,
		nvml.GPU_INSTANCE_PROFILE_4_SLICE:      71680,
	} {
		info := h200.MIGProfiles.GpuInstanceProfiles[id]
		info.MemorySizeMB = mb
		h200.MIGProfiles.GpuInstanceProfiles[id] = info
	}
	cfgs := map[string]gpus.Config{
		"H100-SXM5-80GB":  gpus.H100_SXM5_80GB,
		"A100-SXM4-80GB":  gpus.A100_SXM4_80GB,
		"A100-SXM4-40GB":  a100x40,
		"H200-SXM5-141GB": h200,
	}
	out := make(map[string]*model, len(cfgs))
	for name, cfg := range cfgs {
		m := &model{config: cfg, profiles: map[string]nvml.GpuInstanceProfileInfo{}}
		for id, info := range cfg.MIGProfiles.GpuInstanceProfiles {
			m.totalSlices = max(m.totalSlices, int(info.SliceCount))
			// Media-extension and GFX variants share slices and memory with
			// a base profile; NVML cannot tell them apart from a MIG
			// handle's attributes, so the simulator offers base profiles only.
			switch id {
			case nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV2,
				nvml.GPU_INSTANCE_PROFILE_2_SLICE, nvml.GPU_INSTANCE_PROFILE_3_SLICE,
				nvml.GPU_INSTANCE_PROFILE_4_SLICE, nvml.GPU_INSTANCE_PROFILE_7_SLICE:
				m.profiles[ProfileName(int(info.SliceCount), info.MemorySizeMB, cfg.MemoryMB<<20)] = info
			}
		}
		out[name] = m
	}
	return out
}

// ProfileName is the MIG profile name NVIDIA tools print for a GPU instance
// of the given slice count and memory (MB) on a GPU with gpuMemoryBytes of
// memory: the instance's fraction of GPU memory rounded up to eighths,
// times the GPU's memory in whole GiB rounded up, rounded to the nearest GB
// (the rule of NVIDIA's go-nvlib). The NVML collector derives names the
// same way, so simulated layouts read back under the names they were
// given; a test in the collector's package holds the two to each other.
func ProfileName(slices int, memoryMB, gpuMemoryBytes uint64) string {
	const gib = 1 << 30
	eighths := (memoryMB<<20*8 + gpuMemoryBytes - 1) / gpuMemoryBytes
	totalGB := (gpuMemoryBytes + gib - 1) / gib
	return fmt.Sprintf("%dg.%dgb", slices, (eighths*totalGB+4)/8)
}

// maxPowerWatts is each simulated model's board power limit, the
// datasheets' figures: no simulated job draws more (the authority refuses
// energy above a model's maximum power).
var maxPowerWatts = map[string]int{
	"H100-SXM5-80GB":  700,
	"H200-SXM5-141GB": 700,
	"A100-SXM4-80GB":  400,
	"A100-SXM4-40GB":  400,
}

// MaxPowerWatts is the board power limit of a simulated model ("" is
// DefaultModel), or an error for a model NewMachine does not accept.
func MaxPowerWatts(modelName string) (int, error) {
	if modelName == "" {
		modelName = DefaultModel
	}
	w, ok := maxPowerWatts[modelName]
	if !ok {
		_, err := lookupModel(models(), modelName)
		if err == nil {
			err = fmt.Errorf("no power limit for GPU model %q", modelName)
		}
		return 0, err
	}
	return w, nil
}

// Models lists the model names NewMachine accepts, sorted.
func Models() []string {
	ms := models()
	names := make([]string, 0, len(ms))
	for n := range ms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Profiles lists the MIG profile names a model accepts, sorted.
func Profiles(modelName string) ([]string, error) {
	m, err := lookupModel(models(), modelName)
	if err != nil {
		return nil, err
	}
	return m.profileNames(), nil
}

// CheckLayout reports whether a MIG layout (profile names, in layout
// order) fits a model as SetMIG would apply it: every profile known, none
// used more often than the model allows, and the slices within the GPU.
// An empty layout (MIG off) always fits.
func CheckLayout(modelName string, profiles []string) error {
	m, err := lookupModel(models(), modelName)
	if err != nil {
		return err
	}
	if len(profiles) == 0 {
		return nil
	}
	_, err = m.layout(profiles)
	return err
}

func lookupModel(ms map[string]*model, name string) (*model, error) {
	if name == "" {
		name = DefaultModel
	}
	m, ok := ms[name]
	if !ok {
		known := make([]string, 0, len(ms))
		for n := range ms {
			known = append(known, n)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("unknown GPU model %q (known: %s)", name, strings.Join(known, ", "))
	}
	return m, nil
}

func (m *model) profileNames() []string {
	names := make([]string, 0, len(m.profiles))
	for n := range m.profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// layout checks a MIG layout against the model: every profile known, at
// most InstanceCount of each, and all of them together within the GPU's
// slices. It returns the profiles in layout order.
func (m *model) layout(profiles []string) ([]nvml.GpuInstanceProfileInfo, error) {
	out := make([]nvml.GpuInstanceProfileInfo, 0, len(profiles))
	used := 0
	count := map[string]int{}
	for _, p := range profiles {
		info, ok := m.profiles[p]
		if !ok {
			return nil, fmt.Errorf("unknown MIG profile %q for %s (known: %s)",
				p, m.config.Name, strings.Join(m.profileNames(), ", "))
		}
		count[p]++
		if count[p] > int(info.InstanceCount) {
			return nil, fmt.Errorf("MIG profile %q used %d times, %s allows at most %d",
				p, count[p], m.config.Name, info.InstanceCount)
		}
		used += int(info.SliceCount)
		out = append(out, info)
	}
	if used > m.totalSlices {
		return nil, fmt.Errorf("MIG layout %v needs %d slices, %s has %d",
			profiles, used, m.config.Name, m.totalSlices)
	}
	return out, nil
}
