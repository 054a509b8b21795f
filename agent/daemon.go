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
	"github.com/gpumeter/gpumeter/collectors/kubelet"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

// Daemon is the running agent: the metering loop and the HTTP endpoint.
type Daemon struct {
	cfg      atomic.Pointer[config.Config] // the running config; a reload replaces it
	log      *slog.Logger
	level    *slog.LevelVar // the level log's handler reads; a reload sets it
	metrics  *Metrics
	pipeline *Pipeline
	src      *source
	pods     *kubelet.Source // what namespace rules read; connects only when asked
	delivery *delivery
	out      *os.File // records file, or nil
	listener net.Listener
	notify   *notifier

	reloads chan reloadRequest // served by the loop, between cycles
	done    chan struct{}      // closed when the loop has ended

	lastCycle atomic.Int64 // real time (unix ns) of the last good cycle
	poll      atomic.Int64 // the poll interval in effect (ns)

	// Owned by the loop goroutine (reloads run on it).
	nextPoll     time.Duration // a reloaded poll interval waiting for its window
	nextPollFrom time.Time
	reloadNote   string // the last reload's outcome, for STATUS=
}

// Option adjusts a Daemon built by New.
type Option func(*Daemon)

// WithLogLevel gives the daemon the level variable its logger's handler
// reads, so that a reload can change log.level. Without it a reloaded
// level is accepted and has no effect.
func WithLogLevel(lv *slog.LevelVar) Option { return func(d *Daemon) { d.level = lv } }

// New builds the daemon from a validated config. It fails, before
// anything runs, when the devices, the attribution rules, the web config
// file or the listen address cannot be opened.
func New(cfg *config.Config, log *slog.Logger, version string, opts ...Option) (*Daemon, error) {
	if err := checkWebConfig(cfg, log); err != nil {
		return nil, err
	}
	src, err := openSource(cfg, log)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, src: src, metrics: NewMetrics(version), notify: newNotifier(log),
		level: new(slog.LevelVar), reloads: make(chan reloadRequest), done: make(chan struct{})}
	for _, o := range opts {
		o(d)
	}
	d.cfg.Store(cfg)
	d.poll.Store(int64(cfg.Metering.PollInterval))
	fail := func(err error) (*Daemon, error) {
		d.closeAll()
		return nil, err
	}
	d.pods = openPods(cfg, src.clock, src.kubeletSocket, log)
	if hasNamespaceRules(cfg.Attribution.Rules) {
		d.metrics.watchKubelet(d.pods)
	}
	attr, err := attribution.New(cfg.AttributionConfig(), src.hostRoot, attributionOptions(log, d.pods, src.squeue, src.watcher)...)
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
	d.pipeline = &Pipeline{Collector: src.collector, Attributor: attr, Meter: mt, Clock: src.clock, Metrics: d.metrics, Log: log,
		Inventory: InventoryOptions{Node: cfg.Node.ID, Provider: cfg.Node.Provider, Window: cfg.Metering.Window,
			MergeWindow: mergeWindow(cfg), Agent: version}}
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
	d.metrics.configLoaded(true, time.Now())
	return d, nil
}

// mergeWindow is the merge window the node's inventory reports: the
// spool merges only under a cap, so without one it never merges (0).
func mergeWindow(cfg *config.Config) time.Duration {
	if cfg.Spool.MaxBytes == 0 {
		return 0
	}
	return cfg.Spool.MergeWindow
}

// config is the running config.
func (d *Daemon) config() *config.Config { return d.cfg.Load() }

// Addr is the HTTP listener's address (useful with port 0 in tests).
func (d *Daemon) Addr() string { return d.listener.Addr().String() }

// Handler serves /metrics and /healthz.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", gzipFast(promhttp.HandlerFor(d.metrics.Registry, promhttp.HandlerOpts{
		ErrorLog:           slog.NewLogLogger(d.log.Handler(), slog.LevelError),
		DisableCompression: true, // gzipFast compresses, at a cheaper level
	})))
	mux.HandleFunc("/healthz", d.healthz)
	return mux
}

// healthz is 200 while cycles keep completing: a loop stuck for more than
// three poll intervals of real time (a hung driver call) answers 503.
func (d *Daemon) healthz(w http.ResponseWriter, _ *http.Request) {
	last := d.lastCycle.Load()
	limit := 3 * time.Duration(d.poll.Load()) / time.Duration(d.config().Devices.Speed)
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
// its records, and gives the reporter a few seconds to deliver them. It
// also returns, the same way, when the HTTP endpoint fails.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.config()
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)} // TLS handshake failures, among others
	var srvErr error
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		srvErr = d.serve(srv)
	}()
	repCtx, stopReporter := context.WithCancel(context.Background())
	repDone := make(chan error, 1)
	if rep := d.delivery.reporter; rep != nil {
		go func() { repDone <- rep.Run(repCtx) }()
	} else {
		repDone <- nil
	}
	d.log.Info("gpumeter running", "node", cfg.Node.ID, "devices", cfg.Devices.Source, "listen", d.Addr(),
		"poll_interval", cfg.Metering.PollInterval, "window", cfg.Metering.Window)

	loopErr := d.loop(ctx, srvDone)
	close(d.done)
	d.notify.stopping()

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
	<-srvDone
	if srvErr != nil && !errors.Is(srvErr, http.ErrServerClosed) {
		loopErr = errors.Join(loopErr, fmt.Errorf("http server: %w", srvErr))
	}
	d.closeAll()
	return loopErr
}

// shutdownFlush bounds how long a stopping agent tries to deliver what it
// has; systemd's stop timeout must exceed it.
const shutdownFlush = 5 * time.Second

// loop runs a cycle at every multiple of the poll interval on the agent's
// clock, so ticks fall on window boundaries. Between cycles it serves
// reloads and pings systemd's watchdog; it returns when ctx is cancelled
// or the HTTP server has stopped (Run reports why).
//
// The watchdog is pinged from this goroutine only, and only after READY:
// it says "the loop is alive", which is what a restart can fix (a cycle
// stuck in a driver call or a disk write). A cycle that fails still
// returns, meters gaps, and is reported by /healthz and the collector
// metrics; it does not stop the pings.
func (d *Daemon) loop(ctx context.Context, srvDone <-chan struct{}) error {
	clk := d.src.clock
	poll := time.Duration(d.poll.Load())
	var watchdog <-chan time.Time
	if every := d.notify.watchdog / 2; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		watchdog = t.C
	}
	failing, ready := false, false
	timer := clock.NewTimer(clk)
	defer timer.Stop()
	var tick <-chan time.Time
	for {
		if tick == nil {
			now := clk.Now()
			if d.nextPoll != 0 && !now.Before(d.nextPollFrom) {
				poll, d.nextPoll = d.nextPoll, 0
				d.poll.Store(int64(poll))
				d.log.Info("reloaded poll interval in effect", "poll_interval", poll)
			}
			next := now.Truncate(poll).Add(poll)
			tick = timer.Reset(next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-srvDone:
			return nil
		case req := <-d.reloads:
			req.done <- d.reload()
			continue
		case <-watchdog:
			if ready {
				d.notify.ping()
			}
			continue
		case <-tick:
			tick = nil
		}
		recs, err := d.pipeline.Cycle(ctx)
		if err != nil {
			if !failing { // log once per failure, not once per tick
				d.log.Error("metering cycle failed; units become gaps until it recovers", "err", err)
				d.notify.status("metering cycle failing, units become gaps: " + err.Error())
			}
			failing = true
			continue
		}
		if failing {
			d.log.Info("metering cycle recovered")
			failing = false
			d.notify.status(d.statusLine())
		}
		if !ready {
			if behind := d.pipeline.Meter.ClockBehind(); behind > 0 {
				d.log.Warn("the wall clock is behind the last checkpoint: records run ahead of it by this much until it catches up",
					"behind", behind)
			}
			ready = true
			d.notify.ready(d.statusLine())
		}
		d.lastCycle.Store(time.Now().UnixNano())
		if err := d.emit(ctx, recs); err != nil {
			// A spool refusal is held and logged (rate-limited) by the
			// delivery; what is left here is the records file or the
			// checkpoint encoding.
			d.log.Error("store records", "err", err)
		}
	}
}

// statusLine is the STATUS= text while metering normally.
func (d *Daemon) statusLine() string {
	cfg := d.config()
	return fmt.Sprintf("metering node %s: poll %s, window %s%s",
		cfg.Node.ID, time.Duration(d.poll.Load()), cfg.Metering.Window, d.reloadNote)
}

// emit stores closed windows durably (spool, with the meter's checkpoint)
// and, when configured, appends them to the records file.
func (d *Daemon) emit(ctx context.Context, recs []protocol.Record) error {
	if len(recs) == 0 && d.delivery.heldRecords() == 0 {
		// Most polls close no window; the checkpoint only moves with
		// records, so it is not built (every unit copied and sorted) then.
		return nil
	}
	d.log.Debug("windows closed", "records", len(recs))
	// The records file gets exactly what the spool stored, when it stored
	// it: records held in memory (spool full, disk full) are written once
	// they are durable, never before and never twice.
	stored, full, err := d.delivery.store(ctx, recs, d.pipeline.Meter.Checkpoint())
	d.metrics.setSpoolFull(full)
	if err != nil {
		return err
	}
	if len(stored) == 0 || d.out == nil {
		return nil
	}
	enc := json.NewEncoder(d.out)
	for i := range stored {
		if err := enc.Encode(&stored[i]); err != nil {
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
		if err := d.out.Close(); err != nil {
			d.log.Warn("close records file", "err", err)
		}
	}
	if d.listener != nil {
		_ = d.listener.Close() // shutting down; nothing waits on it
	}
	if d.pods != nil {
		_ = d.pods.Close() // a local socket; nothing to flush
	}
	if d.src != nil && d.src.close != nil {
		if err := d.src.close(); err != nil {
			d.log.Warn("close devices", "err", err)
		}
	}
}

// Registry is the daemon's private metrics registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.metrics.Registry }
