package inventory

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Model is one GPU model of the table.
type Model struct {
	// ID is the canonical id ("H100-SXM5-80GB"), what the store records.
	ID string
	// Names are what NVML's nvmlDeviceGetName returns for the model.
	Names []string
	// MIG says whether the model supports MIG; TotalSlices is then the
	// compute slices of the whole GPU (7 on A100/H100/H200), else 0.
	MIG         bool
	TotalSlices int
	// Profiles maps a base MIG profile name ("3g.40gb") to its size and
	// limit; nil for a model without MIG.
	Profiles map[string]Profile
	// IdleFloorMilliwatts: a record whose mean power is at or below it says
	// the GPU did no work.
	IdleFloorMilliwatts int64
	// MaxPowerMilliwatts is the board's maximum power limit.
	MaxPowerMilliwatts int64
	// Sources say where the figures come from.
	Sources []string
}

// Profile is one MIG GPU instance profile of a model.
type Profile struct {
	// Slices is the profile's compute slices: an instance is
	// Slices/TotalSlices of the GPU.
	Slices int
	// MaxInstances is the most instances of this profile one GPU holds.
	MaxInstances int
}

// Errors of CheckLayout, for errors.Is; the returned errors wrap one and
// name the profile and the model.
var (
	ErrNoMIG            = errors.New("model has no MIG")
	ErrUnknownProfile   = errors.New("unknown MIG profile")
	ErrTooManyInstances = errors.New("more instances of a MIG profile than the GPU holds")
	ErrTooManySlices    = errors.New("MIG layout needs more slices than the GPU has")
)

// Lookup finds a model by its id or by an NVML name, whatever the case and
// surrounding spaces. The Model is a copy.
func Lookup(name string) (Model, bool) {
	i, ok := table.byKey[normalize(name)]
	if !ok {
		return Model{}, false
	}
	return table.models[i].clone(), true
}

// Models lists every model, sorted by id; copies.
func Models() []Model {
	out := make([]Model, len(table.models))
	for i, m := range table.models {
		out[i] = m.clone()
	}
	return out
}

func (m Model) clone() Model {
	m.Names = slices.Clone(m.Names)
	m.Profiles = maps.Clone(m.Profiles)
	m.Sources = slices.Clone(m.Sources)
	return m
}

// Slice is the share of the GPU a unit of the given MIG profile is, as
// num/den: 1/1 for the whole GPU (profile ""), slices/total slices for a
// MIG profile of the model (not reduced: 7g.80gb is 7/7, as the agent
// reports it). ok is false for a profile the model does not have.
func (m Model) Slice(profile string) (num, den int, ok bool) {
	if profile == "" {
		return 1, 1, true
	}
	p, ok := m.Profiles[profile]
	if !ok {
		return 0, 0, false
	}
	return p.Slices, m.TotalSlices, true
}

// CheckLayout checks a GPU's MIG layout (one profile name per instance)
// against the model: every profile known, no more instances of a profile
// than the GPU holds, and all of them together within its slices. A model
// without MIG refuses any instance; an empty layout always fits.
//
// It is a bound, not NVIDIA's placement rules: a layout within the slices
// that no real GPU can place (A100 40GB: 3g.20gb ×2 + 1g.5gb) passes. That
// suffices for what the authority pays: the shares of a GPU's instances
// never add up to more than the GPU.
func (m Model) CheckLayout(profiles []string) error {
	if len(profiles) > 0 && !m.MIG {
		return fmt.Errorf("%w: %s, yet the layout has instance %q", ErrNoMIG, m.ID, profiles[0])
	}
	used := 0
	count := map[string]int{}
	for _, name := range profiles {
		p, ok := m.Profiles[name]
		if !ok {
			return fmt.Errorf("%w: %q on %s (known: %s)", ErrUnknownProfile, name, m.ID,
				strings.Join(slices.Sorted(maps.Keys(m.Profiles)), ", "))
		}
		count[name]++
		if count[name] > p.MaxInstances {
			return fmt.Errorf("%w: %d × %q on %s, at most %d", ErrTooManyInstances,
				count[name], name, m.ID, p.MaxInstances)
		}
		used += p.Slices
		if used > m.TotalSlices {
			return fmt.Errorf("%w: with %q the layout needs %d slices, %s has %d", ErrTooManySlices,
				name, used, m.ID, m.TotalSlices)
		}
	}
	return nil
}
