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
// records keep the anchored timeline, not the stepped wall clock. After
// Resume the timeline is anchored at the checkpoint instead (see below).
//
// # Windows
//
// Windows are [k·W, (k+1)·W) in Unix milliseconds, W = Options.Window (it
// divides 24 h, so records of different nodes line up). The first window
// begins at the first observation (partial; after Resume, at the
// checkpoint's ClosedUntil) and Stop(t) ends the open window at t's
// position (partial). A window is emitted when an observation's
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
//   - several shares: tenant i's exact share is d·wᵢ/W (Share.Weight, W
//     their sum), a rational. The shares are summed exactly per (unit,
//     window) and rounded once, when the window closes: each tenant gets
//     its exact sum rounded down, and the milliseconds left (the fractions
//     add up to whole milliseconds) go one each to the largest fractions,
//     equal fractions ordered by a hash of the window start, the unit and
//     the tenant, never by name. So every tenant's record is less than
//     1 ms from its exact share and the unit's usage sums to its busy time
//     exactly (split.go). Utilization and energy of an interval are divided
//     by its integer parts (largest remainder). Totals count a shared
//     tenant's time rounded down until its window closes.
//
// A unit that the open window knows but that is missing from the latest
// observation is a gap (device_absent) until it reappears; a unit first seen
// mid-window gets device_absent from the window's start to its first
// observation (all of the window when Stop ends it at that very position). A unit that is in no observation during a window gets no
// records for it and is forgotten. Hence, for every unit and every emitted
// window, its usage, idle and gap milliseconds sum to the window's length.
//
// # Checkpoint and restart
//
// A restarted agent must neither lose nor invent the time it was down.
// Checkpoint returns how far accounting was closed, c (the end of the last
// window Observe or Stop returned, a UTC ms instant; Stop closes at its own
// position even when its window was empty), and the identity of the units
// of the latest observation. The agent saves it with the records returned
// so far (MarshalBinary: versioned JSON; UnmarshalBinary refuses unknown
// versions with ErrCheckpointVersion, unknown fields and malformed units).
// It is the zero Checkpoint until a window closes: nothing was returned,
// so a crash before then leaves nothing to continue, and the next run
// starts its own timeline (Resume of the zero Checkpoint does nothing).
//
// A new meter given Resume(cp), before its first Observe, continues that
// timeline. On the first Observe at position p:
//
//   - p > c: every checkpointed unit is down (gap agent_down) on [c, p).
//     Windows run from c as always: [c, the next boundary) and then aligned
//     windows. Those that end by p are emitted whole, all agent_down, by
//     that first Observe, before anything else. The window containing p
//     starts at max(c, p's aligned window start), not at p, and holds
//     agent_down up to p; the meter meters from p on as usual. So a window
//     a graceful Stop cut at c continues as [c, its end), and a crash, which
//     loses the open window, continues from the last closed window's end.
//   - Units observed at p that the checkpoint did not know are first seen
//     mid-window: device_absent from the window's start to p. Checkpointed
//     units missing at p are known to the window: device_absent from p until
//     they reappear, and forgotten after it.
//   - p <= c: the wall clock went back across the restart. The timeline is
//     anchored at c instead (the first observation counts as position c), so
//     no window already closed is metered again; records then run ahead of
//     the wall clock by c-p for the rest of the run. ClockBehind reports it.
//
// Hence every unit's windows still tile time across restarts, and usage,
// idle and gap still sum to each window's length. A checkpoint taken
// before the resumed meter closes a window keeps c (with the units now
// observed), so a crash loop still accounts from the same c. A downtime of
// d yields about d/W records per checkpointed unit, all from one Observe.
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
// since start, the open window's accumulated time included (agent_down
// after Resume too), for Prometheus counters that must not count anything
// twice. They restart from zero with the process, as counters do.
package meter
