package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	nvmlcollector "github.com/gpumeter/gpumeter/collectors/nvml"
)

// cmdDevices reads the real GPUs once (or --count times) through the same
// collector and attribution the daemon uses, and prints what it saw: the
// operator's "what does the agent see on this node?".
func cmdDevices(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "agent config whose attribution rules to apply (optional)")
	count := fs.Int("count", 1, "collections to run; the timing summary covers all of them")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *count < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gpumeter devices [--config FILE] [--count N]")
		return exitUsage
	}
	attrCfg := attribution.Config{}
	hostRoot := "/"
	if *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitConfig
		}
		attrCfg, hostRoot = cfg.AttributionConfig(), cfg.Attribution.HostRoot
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	col := nvmlcollector.New(nvmlcollector.Open(), nvmlcollector.Options{Log: log})
	began := time.Now()
	if err := col.Start(); err != nil {
		fmt.Fprintln(stderr, "gpumeter devices:", err)
		return exitFailure
	}
	initDur := time.Since(began)
	defer func() { _ = col.Close() }()
	attr, err := attribution.New(attrCfg, hostRoot, attribution.WithLogger(log))
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
