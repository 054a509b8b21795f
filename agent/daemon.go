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
	attr, err := attribution.New(cfg.AttributionConfig(), src.hostRoot)
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
	d.metrics.Watch(mt)
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

// Run meters until ctx is cancelled, then closes the open window and
// writes its records before returning.
func (d *Daemon) Run(ctx context.Context) error {
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(d.listener) }()
	d.log.Info("gpumeter running", "node", d.cfg.Node.ID, "devices", d.cfg.Devices.Source, "listen", d.Addr(),
		"poll_interval", d.cfg.Metering.PollInterval, "window", d.cfg.Metering.Window)

	loopErr := d.loop(ctx)

	recs := d.pipeline.Stop()
	if err := d.emit(recs); err != nil {
		d.log.Error("write records of the final window", "err", err)
	}
	d.log.Info("closed the open window", "records", len(recs))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if err := <-srvErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		loopErr = errors.Join(loopErr, fmt.Errorf("http server: %w", err))
	}
	d.closeAll()
	return loopErr
}

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
		d.lastCycle.Store(time.Now().UnixNano())
		if err := d.emit(recs); err != nil {
			return fmt.Errorf("write records: %w", err)
		}
	}
}

func (d *Daemon) emit(recs []record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	d.log.Debug("windows closed", "records", len(recs))
	if d.out == nil {
		return nil
	}
	enc := json.NewEncoder(d.out)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return err
		}
	}
	return d.out.Sync()
}

func (d *Daemon) closeAll() {
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
