package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/kubelet"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

// SimOptions configure a virtual-time run of a scenario.
type SimOptions struct {
	Node, Provider string
	// Duration overrides the scenario's duration when > 0.
	Duration time.Duration
	// Window is the meter's window; 0 means one minute.
	Window time.Duration
	Log    *slog.Logger
	// Agent is the build version the inventory records name.
	Agent string
	// Emit receives each batch of records as windows close, in order,
	// inventory records (protocol.KindInventory) included: one at the
	// start and one at every MIG reconfiguration of the scenario.
	Emit func([]protocol.Record) error
}

// Simulate runs the whole node pipeline (simulated NVML → the NVML
// collector → attribution through the fake host root → meter) over the
// scenario in virtual time, as fast as the CPU allows: a 24-hour scenario
// meters in seconds. It is the code path of a real node, minus real time.
func Simulate(ctx context.Context, sc *scenario.Scenario, opts SimOptions) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Window == 0 {
		opts.Window = time.Minute
	}
	if opts.Node == "" {
		opts.Node = "sim-node"
	}
	if opts.Provider == "" {
		opts.Provider = "sim-provider"
	}
	duration := sc.Duration
	if opts.Duration > 0 {
		duration = opts.Duration
	}
	root, err := os.MkdirTemp("", "gpumeter-sim-root-")
	if err != nil {
		return fmt.Errorf("create simulated host root: %w", err)
	}
	defer os.RemoveAll(root)
	drv, err := scenario.NewDriver(sc, root)
	if err != nil {
		return err
	}
	vclock := clock.NewVirtual(sc.Start)
	col := nvml.New(drv.Machine().Interface(), nvml.Options{Log: opts.Log, Clock: vclock})
	if err := col.Start(); err != nil {
		return err
	}
	defer func() { _ = col.Close() }()
	// A scenario with pods has a simulated kubelet, read as a node's is,
	// listed at every tick (interval 0) so each change lands on its tick.
	kube, err := startSimKubelet(sc, root)
	if err != nil {
		return err
	}
	defer kube.stop()
	pods := kubelet.New(kubelet.Options{Socket: kube.socket(), MaxStale: kubelet.DefaultMaxStale, Clock: vclock, Log: opts.Log})
	defer func() { _ = pods.Close() }()
	attr, err := attribution.New(sc.Attribution, root, attributionOptions(opts.Log, pods, drv.Squeue(), drv.Watcher())...)
	if err != nil {
		return fmt.Errorf("scenario attribution: %w", err)
	}
	mt, err := meter.New(meter.Options{
		Node: opts.Node, Provider: opts.Provider,
		Window: opts.Window, MaxHold: 3 * sc.PollInterval,
	})
	if err != nil {
		return err
	}
	// No spool, so nothing merges: the inventory says so (merge window 0).
	p := &Pipeline{Collector: &drivenCollector{drv: drv, c: col, clock: vclock, kube: kube}, Attributor: attr, Meter: mt, Clock: vclock, Log: opts.Log,
		Inventory: InventoryOptions{Node: opts.Node, Provider: opts.Provider, Window: opts.Window, Agent: opts.Agent}}
	end := sc.Start.Add(duration)
	for t := sc.Start; t.Before(end); t = t.Add(sc.PollInterval) {
		if err := ctx.Err(); err != nil {
			return err
		}
		vclock.Set(t)
		recs, err := p.Cycle(ctx)
		if err != nil {
			return fmt.Errorf("at %s: %w", t.Format(time.RFC3339), err)
		}
		if err := emit(opts.Emit, recs); err != nil {
			return err
		}
	}
	vclock.Set(end)
	return emit(opts.Emit, p.Stop())
}

func emit(f func([]protocol.Record) error, recs []protocol.Record) error {
	if f == nil || len(recs) == 0 {
		return nil
	}
	return f(recs)
}
