package attribution

import (
	"slices"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// arena holds the shares and PID lists of one Attribute call's
// observations in two allocations, sized by the snapshot's processes: a
// unit has at most one share and one PID entry per process. Each unit gets
// sub-slices whose capacity ends at its own part, so an append never
// writes into another unit's. The observations keep them (they are the
// caller's), so an arena is never reused.
type arena struct {
	s []Share
	p []uint32
}

func newArena(units []device.Unit) *arena {
	n := 0
	for _, u := range units {
		n += len(u.Processes)
	}
	return &arena{s: make([]Share, 0, n), p: make([]uint32, 0, n)}
}

// shares is an empty slice with room for n shares.
func (ar *arena) shares(n int) []Share {
	at := len(ar.s)
	ar.s = ar.s[:at+n]
	return ar.s[at : at : at+n]
}

// pids is a slice of n PIDs.
func (ar *arena) pids(n int) []uint32 {
	at := len(ar.p)
	ar.p = ar.p[:at+n]
	return ar.p[at : at+n : at+n]
}

// sortedPIDs are the processes' PIDs, sorted.
func (ar *arena) sortedPIDs(ps []device.Process) []uint32 {
	pids := ar.pids(len(ps))
	for i, p := range ps {
		pids[i] = p.PID
	}
	slices.Sort(pids)
	return pids
}

// groupPIDs sets each share's PIDs: ps[j].PID belongs to shares[which[j]].
func (ar *arena) groupPIDs(shares []Share, which []int, ps []device.Process) {
	all := ar.pids(len(ps))[:0]
	for i := range shares {
		at := len(all)
		for j, w := range which {
			if w == i {
				all = append(all, ps[j].PID)
			}
		}
		shares[i].PIDs = all[at:len(all):len(all)]
	}
}
