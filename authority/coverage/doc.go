// Package coverage measures how much of a period a GPU's records cover:
// the span the GPU was expected to report (from its registration, or the
// period's start, to the period's end or now, whichever comes first), the
// part of it covered by the union of the GPU's record intervals (usage,
// idle and gap alike), and the holes, the maximal parts nothing covers.
// A hole is time for which a node sent nothing: neither usage nor an
// admitted gap.
//
// It is pure: authority/store reads the intervals (ordered by start) and
// this package adds them up. Times are integer Unix milliseconds
// throughout, never floats, so covered + holes = expected exactly.
//
// Invariants: intervals overlapping or nested count once (a union, never a
// sum), so covered never exceeds expected; the holes listed are in order,
// disjoint, and at most MaxHoles, with the number left off in MoreHoles.
package coverage
