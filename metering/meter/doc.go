// Package meter turns a stream of attributed observations into usage records:
// it integrates GPU time per (unit, tenant) on an integer-millisecond timeline
// and closes windows aligned to the Unix epoch.
//
// It must never invent or lose a millisecond: every millisecond of every unit
// it knows in a window is a tenant's (usage), idle, or a gap with a reason. It
// never reads the clock itself, never does I/O and never logs; the caller
// passes the observation time and decides what to do with the records.
//
// # Timeline
//
// On the first Observe(t, …) the meter anchors position p0 = t.UnixMilli()
// and remembers t. A later time t maps to position
// p0 + floor(t.Sub(first t) / 1 ms). Sub uses Go's monotonic clock reading
// when both times carry one (time.Now()), so wall-clock steps (NTP) neither
// lose nor invent time during a run; virtual-clock times have no monotonic
// reading and Sub is plain arithmetic. Positions never go backwards: a time
// that maps before the last position is treated as the last position.
// Record times are the UTC instants of positions, so after a wall-clock step
// records keep the anchored timeline, not the stepped wall clock.
//
// # Windows
//
// Windows are [k·W, (k+1)·W) in Unix milliseconds, W = Options.Window (it
// divides 24 h, so records of different nodes line up). The first window
// begins at the first observation (partial) and Stop(t) ends the open window
// at t's position (partial). A window is emitted when an observation's
// position reaches its end; an observation after a long silence closes every
// window in between, each emitted whole.
//
// # Sample and hold
//
// An observation at position p describes each of its units on [p, next
// observation), but for at most Options.MaxHold; the rest, until the next
// observation, is a gap (no_sample), so a stalled agent never invents usage or
// idle time. An interval that crosses a window boundary is split at the
// boundary. For each unit and held interval of d ms:
//
//   - the unit is lost (Observation.Lost): gap device_lost;
//   - no shares: idle;
//   - one share: d ms of that tenant's usage;
//   - several shares: d is split by Share.Weight with the largest-remainder
//     method, remainder ties to the lexically smaller tenant, so the parts sum
//     to d exactly. Each split is computed per interval (per observation and
//     window), not per record.
//
// A unit that the open window knows but that is missing from the latest
// observation is a gap (device_absent) until it reappears; a unit first seen
// mid-window gets device_absent from the window's start to its first
// observation. A unit that is in no observation during a window gets no
// records for it and is forgotten. Hence, for every unit and every emitted
// window, its usage, idle and gap milliseconds sum to the window's length.
//
// # Record fields
//
// One record per (window, unit, kind, tenant or gap reason) with a non-zero
// GPUMillis. Unit fields come from the unit's latest observation in the
// window.
//
//   - UtilizationPercent: the time-weighted mean of the unit's
//     UtilizationPercent over the record's milliseconds whose reading was
//     known, rounded half up; -1 if none was known, and always -1 for gaps.
//   - EnergyMillijoules: the energy counter's delta between two consecutive
//     observations of a readable unit (a negative delta, a counter reset,
//     counts as 0) is spread over the interval between them in proportion to
//     milliseconds, largest remainder, ties to the earlier part; the share of
//     the interval beyond MaxHold (a gap) is dropped, never given to a
//     tenant. Two observations at the same position carry the delta over to
//     the next interval. A record sums the parts of its intervals whose
//     counter was read at both ends; -1 if none was (units without an energy
//     counter, such as MIG instances, the interval before Stop, gaps).
//   - Attribution: the method of the tenant's longest part in the window,
//     ties to the most recent. SharedWith: the most other tenants on the unit
//     at once during the record's time; SplitRule: the last split rule seen
//     while shared.
//
// Records are ordered by window start, unit UUID, kind (usage, idle, gap),
// then tenant or gap reason, and carry ID = Record.ComputeID().
//
// # Counters
//
// Totals gives cumulative milliseconds per (tenant, unit, kind, gap reason)
// since start, the open window's accumulated time included, for Prometheus
// counters that must not count anything twice.
package meter
