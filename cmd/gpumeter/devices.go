package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	nvmlcollector "github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/clock"
)

// cmdDevices reads the real GPUs once (or --count times) through the same
// collector and attribution the daemon uses, and prints what it saw: the
// operator's "what does the agent see on this node?".
func cmdDevices(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "agent config whose attribution rules to apply (optional)")
	count := fs.Int("count", 1, "collections to run; the timing summary covers all of them")
	at := fs.Duration("at", 0, "with a config's simulated source: the offset into its scenario to read the GPUs at")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *count < 1 || *at < 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gpumeter devices [--config FILE] [--count N] [--at D]")
		return exitUsage
	}
	var cfg *config.Config
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			fmt.Fprintln(stderr, err)
			return exitConfig
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src, code := devicesSource(cfg, *at, log, stderr)
	if code != exitOK {
		return code
	}
	defer src.close()
	col := src.col
	began := time.Now()
	if err := col.Start(); err != nil {
		fmt.Fprintln(stderr, "gpumeter devices:", err)
		return exitFailure
	}
	initDur := time.Since(began)
	defer func() { _ = col.Close() }()
	attr, err := attribution.New(src.attr, src.hostRoot, attribution.WithLogger(log), attribution.WithSqueue(src.squeue))
	if err != nil {
		fmt.Fprintln(stderr, "gpumeter devices:", err)
		return exitConfig
	}
	var snap device.Snapshot
	durs := make([]time.Duration, 0, *count)
	for range *count {
		t0 := time.Now()
		snap, err = col.Collect(ctx)
		durs = append(durs, time.Since(t0))
		if err != nil {
			fmt.Fprintln(stderr, "gpumeter devices:", err)
			return exitFailure
		}
	}
	obs := attr.Attribute(ctx, snap)
	type unitView struct {
		UUID    string              `json:"uuid"`
		Parent  string              `json:"parent_uuid"`
		Profile string              `json:"mig_profile,omitempty"`
		Share   string              `json:"share"`
		Lost    string              `json:"lost,omitempty"`
		Tenants []attribution.Share `json:"tenants"`
	}
	view := struct {
		Devices []device.Device `json:"devices"`
		Units   []unitView      `json:"units"`
		Timing  map[string]any  `json:"timing"`
	}{Devices: snap.Devices}
	for _, o := range obs {
		u := unitView{UUID: o.Unit.UUID, Parent: o.Unit.ParentUUID, Profile: o.Unit.Profile,
			Share: fmt.Sprintf("%d/%d", o.Unit.SliceNum, o.Unit.SliceDen), Tenants: o.Shares}
		if o.Unit.Err != nil {
			u.Lost = o.Unit.Err.Error()
		}
		view.Units = append(view.Units, u)
	}
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	view.Timing = map[string]any{
		"init_us":           initDur.Microseconds(),
		"collections":       len(durs),
		"collect_median_us": durs[len(durs)/2].Microseconds(),
		"collect_min_us":    durs[0].Microseconds(),
		"collect_max_us":    durs[len(durs)-1].Microseconds(),
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(view); err != nil {
		fmt.Fprintln(stderr, "gpumeter devices:", err)
		return exitFailure
	}
	return exitOK
}

// devSource is what `gpumeter devices` reads: the node's GPUs through
// NVML, or, when the config's devices.source is simulated, its scenario's
// simulated GPUs and fake host root at an offset into the scenario.
type devSource struct {
	col      *nvmlcollector.Collector
	attr     attribution.Config
	hostRoot string
	squeue   string // the simulated Slurm controller's, "" on a real node
	close    func()
}

func devicesSource(cfg *config.Config, at time.Duration, log *slog.Logger, stderr io.Writer) (devSource, int) {
	src := devSource{hostRoot: "/", close: func() {}}
	if cfg != nil {
		src.attr, src.hostRoot = cfg.AttributionConfig(), cfg.Attribution.HostRoot
	}
	if cfg == nil || cfg.Devices.Source != "simulated" {
		if at != 0 {
			fmt.Fprintln(stderr, "gpumeter devices: --at needs a config whose devices.source is simulated")
			return src, exitUsage
		}
		src.col = nvmlcollector.New(nvmlcollector.Open(), nvmlcollector.Options{Log: log, DriverDir: nvmlcollector.DriverProcDir})
		return src, exitOK
	}
	sc, err := scenario.Load(agent.ScenarioPath(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "%s: devices.scenario: %v\n", cfg.Where("devices.scenario"), err)
		return src, exitConfig
	}
	if at > sc.Duration {
		fmt.Fprintf(stderr, "gpumeter devices: --at %v is beyond the scenario's %v\n", at, sc.Duration)
		return src, exitUsage
	}
	// A fresh fake host root of its own: the running agent's, in its state
	// directory, is the agent's to write.
	root, err := os.MkdirTemp("", "gpumeter-devices-root-")
	if err != nil {
		fmt.Fprintln(stderr, "gpumeter devices:", err)
		return src, exitFailure
	}
	src.close = func() { _ = os.RemoveAll(root) }
	drv, err := scenario.NewDriver(sc, root)
	if err == nil {
		err = drv.Apply(sc.Start.Add(at))
	}
	if err != nil {
		src.close()
		fmt.Fprintln(stderr, "gpumeter devices:", err)
		return src, exitFailure
	}
	src.col = nvmlcollector.New(drv.Machine().Interface(),
		nvmlcollector.Options{Log: log, Clock: clock.NewVirtual(sc.Start.Add(at))})
	src.hostRoot, src.squeue = root, drv.Squeue()
	return src, exitOK
}
