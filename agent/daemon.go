package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/metering/record"
)

// Daemon is the running agent: the metering loop and the HTTP endpoint.
type Daemon struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *Metrics
	pipeline *Pipeline
	src      *source
	delivery *delivery
	out      *os.File // records file, or nil
	listener net.Listener

	lastCycle atomic.Int64 // real time (unix ns) of the last good cycle
}

// New builds the daemon from a validated config. It fails, before
// anything runs, when the devices, the attribution rules or the listen
// address cannot be opened.
func New(cfg *config.Config, log *slog.Logger, version string) (*Daemon, error) {
	src, err := openSource(cfg, log)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, src: src, metrics: NewMetrics(version)}
	fail := func(err error) (*Daemon, error) {
		d.closeAll()
		return nil, err
	}
	attr, err := attribution.New(cfg.AttributionConfig(), src.hostRoot, attribution.WithLogger(log))
	if err != nil {
		return fail(fmt.Errorf("attribution: %w", err))
	}
	mt, err := meter.New(meter.Options{
		Node: cfg.Node.ID, Provider: cfg.Node.Provider,
		Window: cfg.Metering.Window, MaxHold: cfg.Metering.MaxHold,
	})
	if err != nil {
		return fail(fmt.Errorf("meter: %w", err))
	}
	d.delivery, err = openDelivery(cfg, log, mt)
	if err != nil {
		return fail(err)
	}
	d.metrics.Watch(mt)
	d.metrics.WatchDelivery(d.delivery)
	d.pipeline = &Pipeline{Collector: src.collector, Attributor: attr, Meter: mt, Clock: src.clock, Metrics: d.metrics, Log: log}
	if p := cfg.Output.RecordsFile; p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fail(fmt.Errorf("open records file: %w", err))
		}
		d.out = f
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fail(fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err))
	}
	d.listener = ln
	return d, nil
}

// Addr is the HTTP listener's address (useful with port 0 in tests).
func (d *Daemon) Addr() string { return d.listener.Addr().String() }

// Handler serves /metrics and /healthz.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelError),
	}))
	mux.HandleFunc("/healthz", d.healthz)
	return mux
}

// healthz is 200 while cycles keep completing: a loop stuck for more than
// three poll intervals of real time (a hung driver call) answers 503.
func (d *Daemon) healthz(w http.ResponseWriter, _ *http.Request) {
	last := d.lastCycle.Load()
	limit := 3 * d.cfg.Metering.PollInterval / time.Duration(d.cfg.Devices.Speed)
	limit = max(limit, time.Second) // a fast simulation must not flap on scheduling delays
	if last == 0 {
		http.Error(w, "no metering cycle completed yet", http.StatusServiceUnavailable)
		return
	}
	if age := time.Since(time.Unix(0, last)); age > limit {
		http.Error(w, fmt.Sprintf("no metering cycle completed in the last %s", age.Truncate(time.Millisecond)), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Run meters until ctx is cancelled, then closes the open window, stores
// its records, and gives the reporter a few seconds to deliver them.
func (d *Daemon) Run(ctx context.Context) error {
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(d.listener) }()
	repCtx, stopReporter := context.WithCancel(context.Background())
	repDone := make(chan error, 1)
	if rep := d.delivery.reporter; rep != nil {
		go func() { repDone <- rep.Run(repCtx) }()
	} else {
		repDone <- nil
	}
	d.log.Info("gpumeter running", "node", d.cfg.Node.ID, "devices", d.cfg.Devices.Source, "listen", d.Addr(),
		"poll_interval", d.cfg.Metering.PollInterval, "window", d.cfg.Metering.Window)

	loopErr := d.loop(ctx)

	recs := d.pipeline.Stop()
	if err := d.emit(context.Background(), recs); err != nil {
		loopErr = errors.Join(loopErr, fmt.Errorf("store the final window: %w", err))
	}
	d.log.Info("closed the open window", "records", len(recs))
	stopReporter()
	if err := <-repDone; err != nil && !errors.Is(err, context.Canceled) {
		d.log.Warn("reporter", "err", err)
	}
	if rep := d.delivery.reporter; rep != nil {
		flushCtx, cancel := context.WithTimeout(context.Background(), shutdownFlush)
		if err := rep.Flush(flushCtx); err != nil {
			d.log.Warn("not everything reached the authority before shutdown; the spool keeps it for the next start", "err", err)
		}
		cancel()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if err := <-srvErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		loopErr = errors.Join(loopErr, fmt.Errorf("http server: %w", err))
	}
	d.closeAll()
	return loopErr
}

// shutdownFlush bounds how long a stopping agent tries to deliver what it
// has; systemd's stop timeout must exceed it.
const shutdownFlush = 5 * time.Second

// loop runs a cycle at every multiple of the poll interval on the agent's
// clock, so ticks fall on window boundaries.
func (d *Daemon) loop(ctx context.Context) error {
	poll := d.cfg.Metering.PollInterval
	failing := false
	for {
		now := d.src.clock.Now()
		next := now.Truncate(poll).Add(poll)
		select {
		case <-ctx.Done():
			return nil
		case <-d.src.clock.After(next.Sub(now)):
		}
		recs, err := d.pipeline.Cycle(ctx)
		if err != nil {
			if !failing { // log once per failure, not once per tick
				d.log.Error("metering cycle failed; units become gaps until it recovers", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			d.log.Info("metering cycle recovered")
			failing = false
		}
		if d.lastCycle.Load() == 0 {
			if behind := d.pipeline.Meter.ClockBehind(); behind > 0 {
				d.log.Warn("the wall clock is behind the last checkpoint: records run ahead of it by this much until it catches up",
					"behind", behind)
			}
		}
		d.lastCycle.Store(time.Now().UnixNano())
		if err := d.emit(ctx, recs); err != nil {
			// The records are held in memory and offered again next cycle.
			d.log.Error("store records", "err", err)
		}
	}
}

// emit stores closed windows durably (spool, with the meter's checkpoint)
// and, when configured, appends them to the records file.
func (d *Daemon) emit(ctx context.Context, recs []record.Record) error {
	if len(recs) == 0 && d.delivery.heldRecords() == 0 {
		// Most polls close no window; the checkpoint only moves with
		// records, so it is not built (every unit copied and sorted) then.
		return nil
	}
	d.log.Debug("windows closed", "records", len(recs))
	full, err := d.delivery.store(ctx, recs, d.pipeline.Meter.Checkpoint())
	d.metrics.setSpoolFull(full)
	if err != nil {
		return err
	}
	if len(recs) == 0 || d.out == nil {
		return nil
	}
	enc := json.NewEncoder(d.out)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return fmt.Errorf("records file: %w", err)
		}
	}
	return d.out.Sync()
}

func (d *Daemon) closeAll() {
	if d.delivery != nil {
		if err := d.delivery.close(); err != nil {
			d.log.Warn("close spool", "err", err)
		}
	}
	if d.out != nil {
		d.out.Close()
	}
	if d.listener != nil {
		d.listener.Close()
	}
	if d.src != nil && d.src.close != nil {
		if err := d.src.close(); err != nil {
			d.log.Warn("close devices", "err", err)
		}
	}
}

// Registry is the daemon's private metrics registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.metrics.Registry }
