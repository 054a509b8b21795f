package nvml

import (
	"slices"

	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// What a Collect keeps between polls, so that a poll of an unchanged node
// allocates next to nothing of its own (the NVML library's answers aside).
//
// Every NVML call is still made every poll: nothing says when a GPU was
// replaced or re-partitioned (a reconfiguration may reuse handle slots and
// instance ids), and the calls that identify an instance return plain
// values. What is kept are the strings the collector derives from those
// answers (canonical UUIDs, profile names), each with the answer it was
// derived from: it is used again only while NVML gives the same answer,
// and derived afresh the first poll it differs. So invalidation is exact
// by construction: a new GPU at an index, a new UUID, a new MIG layout or
// profile each changes an input, and the cache can never say more than a
// recomputation would.

// gpuIDs is what was derived for the GPU last read at one NVML index.
type gpuIDs struct {
	id  canonicalID
	mig []migIDs // by MIG handle slot
}

// migIDs is what was derived for the MIG instance last read in one slot.
type migIDs struct {
	id canonicalID
	// profile is ProfileName(slices, memMB, gpuMem).
	slices        int
	memMB, gpuMem uint64
	profile       string
}

// idsAt is the entry of NVML index idx; count is this poll's GPU count, so
// entries of indexes no longer enumerated are dropped.
func (c *Collector) idsAt(idx, count int) *gpuIDs {
	if len(c.ids) != count {
		if count < len(c.ids) {
			clear(c.ids[count:])
		}
		c.ids = slices.Grow(c.ids[:min(count, len(c.ids))], count)[:count]
	}
	return &c.ids[idx]
}

// canonicalID is GetUUID's answer and its canonical form.
type canonicalID struct{ raw, uuid string }

// of is canon(raw), derived again only when raw differs from the last
// answer (changed).
func (c *canonicalID) of(raw string, canon func(string) (string, error)) (uuid string, changed bool, err error) {
	if c.uuid != "" && raw == c.raw {
		return c.uuid, false, nil
	}
	if uuid, err = canon(raw); err != nil {
		return "", false, err
	}
	c.raw, c.uuid = raw, uuid
	return uuid, true, nil
}

// canonical is CanonicalGPUUUID(raw), derived again only when raw differs
// from the last answer at this index: then it is another GPU (or the same
// one renamed), and its MIG slots' entries are dropped with it.
func (g *gpuIDs) canonical(raw string) (string, error) {
	uuid, changed, err := g.id.of(raw, protocol.CanonicalGPUUUID)
	if changed {
		clear(g.mig)
		g.mig = g.mig[:0]
	}
	return uuid, err
}

// slot is the entry of MIG handle slot k (0 <= k < n, n the GPU's maximum
// MIG device count).
func (g *gpuIDs) slot(k, n int) *migIDs {
	if len(g.mig) < n {
		g.mig = slices.Grow(g.mig, n)[:n]
	}
	return &g.mig[k]
}

// canonical is CanonicalMIGUUID(raw), derived again when raw differs.
func (m *migIDs) canonical(raw string) (string, error) {
	uuid, _, err := m.id.of(raw, protocol.CanonicalMIGUUID)
	return uuid, err
}

// profileName is ProfileName of these figures, derived again when one
// differs.
func (m *migIDs) profileName(slices int, memMB, gpuMem uint64) string {
	if m.profile == "" || slices != m.slices || memMB != m.memMB || gpuMem != m.gpuMem {
		m.profile = ProfileName(slices, memMB, gpuMem)
		m.slices, m.memMB, m.gpuMem = slices, memMB, gpuMem
	}
	return m.profile
}

// arena hands out one snapshot's instances and processes from a few
// allocations: one of each per Collect once it is sized by the poll
// before. The snapshot keeps them (it is the caller's), so an arena's
// memory is never reused by a later Collect; each slice handed out has its
// capacity end at its own part, so an append by a caller never writes into
// another's.
type arena struct {
	inst []device.Instance
	run  int // where the instances of the device being read begin in inst
	proc []device.Process
	// used counts what this Collect took, to size the next one's.
	usedInst, usedProc int
}

// newArena is an arena sized for what the previous Collect used.
func newArena(prev *arena) arena {
	var a arena
	if prev.usedInst > 0 {
		a.inst = make([]device.Instance, 0, prev.usedInst)
	}
	if prev.usedProc > 0 {
		a.proc = make([]device.Process, 0, prev.usedProc)
	}
	return a
}

// startInstances begins the instances of the next device (again, when an
// enumeration is retried).
func (a *arena) startInstances() { a.run = len(a.inst) }

// addInstance appends in to the current device's instances and returns
// them all.
func (a *arena) addInstance(in device.Instance) []device.Instance {
	if len(a.inst) == cap(a.inst) {
		// Full: the current device's instances move to a new block.
		n := len(a.inst) - a.run
		block := make([]device.Instance, n, max(2*cap(a.inst), n+8))
		copy(block, a.inst[a.run:])
		a.inst, a.run = block, 0
	}
	a.inst = append(a.inst, in)
	a.usedInst++
	return a.inst[a.run:len(a.inst):len(a.inst)]
}

// processes is a zeroed slice of n processes (empty, not nil, for n 0).
func (a *arena) processes(n int) []device.Process {
	if n == 0 {
		return []device.Process{}
	}
	if cap(a.proc)-len(a.proc) < n {
		a.proc = make([]device.Process, 0, max(2*cap(a.proc), n))
	}
	at := len(a.proc)
	a.proc = a.proc[:at+n]
	a.usedProc += n
	return a.proc[at : at+n : at+n]
}

// sameIdentity reports whether known, the identity kept for a GPU, is
// still identity(d): then it is kept as it is rather than copied again.
func sameIdentity(known, d *device.Device) bool {
	if known.Index != d.Index || known.UUID != d.UUID || known.Model != d.Model ||
		known.MemoryTotalBytes != d.MemoryTotalBytes || known.MIGEnabled != d.MIGEnabled ||
		len(known.Instances) != len(d.Instances) {
		return false
	}
	for i := range d.Instances {
		a, b := &known.Instances[i], &d.Instances[i]
		if a.UUID != b.UUID || a.GPUInstanceID != b.GPUInstanceID || a.ComputeInstanceID != b.ComputeInstanceID ||
			a.Profile != b.Profile || a.Slices != b.Slices || a.TotalSlices != b.TotalSlices || a.MemoryBytes != b.MemoryBytes {
			return false
		}
	}
	return true
}
