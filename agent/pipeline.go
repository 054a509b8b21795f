// Package agent wires the node pipeline (collect → attribute → meter) into a
// daemon: its lifecycle, HTTP endpoints and metrics. It owns no accounting
// rule of its own; those live in the stages it wires.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

// Collector is the device layer as the pipeline sees it: the NVML collector
// over the real library or over the simulator.
type Collector interface {
	Collect(ctx context.Context) (device.Snapshot, error)
}

// Pipeline runs one metering cycle at a time. It is not safe for concurrent
// Cycle calls; the daemon's loop and the simulate command each own one.
type Pipeline struct {
	Collector  Collector
	Attributor *attribution.Attributor
	Meter      *meter.Meter
	Clock      clock.Clock
	Metrics    *Metrics // may be nil
	Log        *slog.Logger
	// Inventory, when its Window is set, makes Cycle return the node's
	// inventory records (see inventory).
	Inventory InventoryOptions

	// next is an attributor waiting for its window (see SetAttributor);
	// nextFrom is that window's start on the meter's timeline (Unix ms).
	next     *attribution.Attributor
	nextFrom int64
	// t0 is the time of the meter's first observation, which anchors its
	// timeline.
	t0 time.Time
	// inv tracks the inventory last reported.
	inv inventory
}

// SetAttributor hands the pipeline reloaded rules. They take over at the
// start of the next record window, window long: the window open now keeps
// the rules it began with, to the millisecond, and every observation of a
// later window is attributed with the new ones. It returns that window's
// start. A second call before then replaces the first.
//
// Precisely: attribution happens per observation, and the meter holds an
// observation until the next one (sample and hold, at most max_hold). So
// the moment between the window's start and its first observation (the
// loop's wake-up delay; at most a poll interval) is still described by
// the last observation of the window before, with the old rules. With a
// clock that polls exactly on the boundary, as in virtual time, the new
// window is the new rules' entirely.
func (p *Pipeline) SetAttributor(a *attribution.Attributor, window time.Duration) time.Time {
	w := window.Milliseconds()
	pos := p.position(p.Clock.Now())
	if p.next != nil {
		_ = p.next.Close() // replaced before it ever ran: release its pidfds
	}
	p.next, p.nextFrom = a, floorDiv(pos, w)*w+w
	return time.UnixMilli(p.nextFrom).UTC()
}

// position is where the meter puts time t on its timeline, as
// metering/meter documents it: the first observation's Unix millisecond
// plus the whole milliseconds since it (ahead by ClockBehind after a
// restart with the wall clock set back). Comparing positions rather than
// clock times keeps the handover exact although the timeline lags the
// clock by the first observation's sub-millisecond part.
func (p *Pipeline) position(t time.Time) int64 {
	if p.t0.IsZero() {
		return t.UnixMilli() // t would be the first observation
	}
	return p.t0.UnixMilli() + p.Meter.ClockBehind().Milliseconds() + floorDiv(int64(t.Sub(p.t0)), int64(time.Millisecond))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Cycle collects, attributes and meters once at the clock's current time,
// and returns the records of the windows this cycle closed, followed by an
// inventory record when one is due (at the first observation, and when the
// GPUs or their MIG layouts change; see inventory for why after them).
//
// A failed collection is not fatal: the meter is not fed, so the units'
// hold runs out and their time becomes a no_sample gap rather than invented
// usage; the error is counted and logged by the caller's rate.
func (p *Pipeline) Cycle(ctx context.Context) ([]protocol.Record, error) {
	start := p.Clock.Now()
	began := time.Now()
	snap, err := p.Collector.Collect(ctx)
	collectDur := time.Since(began)
	if p.Metrics != nil {
		p.Metrics.observeCollect(collectorNVML, collectDur, err)
	}
	if err != nil {
		return nil, fmt.Errorf("collect devices: %w", err)
	}
	if p.next != nil && p.position(start) >= p.nextFrom {
		// The replaced rules' process watches (pidfds) are released now,
		// not when the collector gets to them.
		if p.Attributor != nil {
			_ = p.Attributor.Close()
		}
		p.Attributor, p.next = p.next, nil
		if p.Log != nil {
			p.Log.Info("reloaded attribution rules in effect", "window_start", time.UnixMilli(p.nextFrom).UTC())
		}
	}
	if p.t0.IsZero() {
		p.t0 = start
	}
	obs := p.Attributor.Attribute(ctx, snap)
	recs := p.Meter.Observe(start, obs)
	if p.Metrics != nil {
		p.Metrics.observeCycle(snap, obs, recs, time.Since(began), start)
	}
	if p.Inventory.Window > 0 {
		p.inv.opts, p.inv.log = p.Inventory, p.Log
		// After Observe: the position needs ClockBehind, known from the
		// first observation after a resume.
		if r, ok := p.inv.observe(snap, p.position(start)); ok {
			recs = append(recs[:len(recs):len(recs)], r)
		}
	}
	return recs, nil
}

// Stop closes the open window at the clock's current time.
func (p *Pipeline) Stop() []protocol.Record {
	recs := p.Meter.Stop(p.Clock.Now())
	if p.Metrics != nil {
		p.Metrics.countRecords(recs)
	}
	return recs
}
