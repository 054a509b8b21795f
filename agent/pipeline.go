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
	"github.com/gpumeter/gpumeter/metering/record"
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
}

// Cycle collects, attributes and meters once at the clock's current time,
// and returns the records of the windows this cycle closed.
//
// A failed collection is not fatal: the meter is not fed, so the units'
// hold runs out and their time becomes a no_sample gap rather than invented
// usage; the error is counted and logged by the caller's rate.
func (p *Pipeline) Cycle(ctx context.Context) ([]record.Record, error) {
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
	obs := p.Attributor.Attribute(ctx, snap)
	recs := p.Meter.Observe(start, obs)
	if p.Metrics != nil {
		p.Metrics.observeCycle(snap, obs, recs, time.Since(began), start)
	}
	return recs, nil
}

// Stop closes the open window at the clock's current time.
func (p *Pipeline) Stop() []record.Record {
	recs := p.Meter.Stop(p.Clock.Now())
	if p.Metrics != nil {
		p.Metrics.countRecords(recs)
	}
	return recs
}
