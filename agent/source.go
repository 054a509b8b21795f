package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/device"
	nvmlcollector "github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/clock"
)

// source is the device layer the daemon meters, with its clock and the
// host root attribution must read.
type source struct {
	collector Collector
	clock     clock.Clock
	hostRoot  string
	close     func() error
}

// openSource starts the configured device layer. With source: nvml it is
// the real driver; with source: simulated the same NVML collector reads a
// scenario-driven simulated machine, and attribution reads the simulator's
// fake host root instead of the configured one.
func openSource(cfg *config.Config, log *slog.Logger) (*source, error) {
	switch cfg.Devices.Source {
	case "nvml":
		c := nvmlcollector.New(nvmlcollector.Open(), nvmlcollector.Options{Log: log})
		if err := c.Start(); err != nil {
			return nil, err
		}
		return &source{collector: c, clock: clock.Real{}, hostRoot: cfg.Attribution.HostRoot, close: c.Close}, nil
	case "simulated":
		sc, err := scenario.Load(ScenarioPath(cfg))
		if err != nil {
			return nil, fmt.Errorf("devices.scenario: %w", err)
		}
		root, err := os.MkdirTemp("", "gpumeter-sim-root-")
		if err != nil {
			return nil, fmt.Errorf("create simulated host root: %w", err)
		}
		drv, err := scenario.NewDriver(sc, root)
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		clk := clock.NewScaled(sc.Start, cfg.Devices.Speed)
		c := nvmlcollector.New(drv.Machine().Interface(), nvmlcollector.Options{Log: log, Clock: clk})
		if err := c.Start(); err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		return &source{
			collector: &drivenCollector{drv: drv, c: c, clock: clk},
			clock:     clk,
			hostRoot:  root,
			close: func() error {
				err := c.Close()
				os.RemoveAll(root)
				return err
			},
		}, nil
	}
	return nil, fmt.Errorf("devices.source %q: unknown", cfg.Devices.Source)
}

// drivenCollector brings the simulated machine to the scenario's state at
// the clock's time, then collects through the real NVML collector code.
type drivenCollector struct {
	drv   *scenario.Driver
	c     *nvmlcollector.Collector
	clock clock.Clock
}

func (d *drivenCollector) Collect(ctx context.Context) (device.Snapshot, error) {
	if err := d.drv.Apply(d.clock.Now()); err != nil {
		return device.Snapshot{}, fmt.Errorf("apply scenario: %w", err)
	}
	return d.c.Collect(ctx)
}

// ScenarioPath resolves devices.scenario: as given when it exists,
// otherwise relative to the config file's directory.
func ScenarioPath(cfg *config.Config) string {
	path := cfg.Devices.Scenario
	if filepath.IsAbs(path) || cfg.Path() == "" {
		return path
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	return filepath.Join(filepath.Dir(cfg.Path()), path)
}
