package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/clock"
)

// source is the device layer the daemon meters, with its clock and the
// host root attribution must read.
type source struct {
	collector Collector
	clock     clock.Clock
	hostRoot  string
	// kubeletSocket is the simulated kubelet's ("" on a real node: the
	// config's).
	kubeletSocket string
	squeue        string // a simulated node's fake squeue (scenario slurm_jobs), else ""
	// watcher follows a simulated node's processes exactly (nil on a real
	// node: attribution's own pidfds).
	watcher attribution.ProcessWatcher
	close   func() error
}

// openSource starts the configured device layer. With source: nvml it is
// the real driver; with source: simulated the same NVML collector reads a
// scenario-driven simulated machine, and attribution reads the simulator's
// fake host root instead of the configured one.
func openSource(cfg *config.Config, log *slog.Logger) (*source, error) {
	switch cfg.Devices.Source {
	case "nvml":
		c := nvml.New(nvml.Open(), nvml.Options{Log: log, DriverDir: nvml.DriverProcDir})
		if err := c.Start(); err != nil {
			return nil, err
		}
		return &source{collector: c, clock: clock.Real{}, hostRoot: cfg.Attribution.HostRoot, close: c.Close}, nil
	case "simulated":
		sc, err := scenario.Load(ScenarioPath(cfg))
		if err != nil {
			return nil, fmt.Errorf("devices.scenario: %w", err)
		}
		// The fake host root lives in the state directory and is cleared
		// at start, so an agent killed with SIGKILL leaves one behind at
		// most, and the next start replaces it.
		root := filepath.Join(cfg.StateDir, "sim-root")
		if err := os.RemoveAll(root); err != nil {
			return nil, fmt.Errorf("clear simulated host root: %w", err)
		}
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("create simulated host root: %w", err)
		}
		clk, err := simClock(cfg, sc)
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		// simClock moved the scenario onto the node's timeline first.
		drv, err := scenario.NewDriver(sc, root)
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		kube, err := startSimKubelet(sc, root)
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		c := nvml.New(drv.Machine().Interface(), nvml.Options{Log: log, Clock: clk})
		if err := c.Start(); err != nil {
			kube.stop()
			os.RemoveAll(root)
			return nil, err
		}
		return &source{
			collector:     &drivenCollector{drv: drv, c: c, clock: clk, kube: kube},
			clock:         clk,
			hostRoot:      root,
			kubeletSocket: kube.socket(),
			squeue:        drv.Squeue(),
			watcher:       drv.Watcher(),
			close: func() error {
				err := c.Close()
				kube.stop()
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
	c     *nvml.Collector
	clock clock.Clock
	kube  *simKubelet // nil when the scenario has no kubelet
}

func (d *drivenCollector) Collect(ctx context.Context) (device.Snapshot, error) {
	now := d.clock.Now()
	if err := d.drv.Apply(now); err != nil {
		return device.Snapshot{}, fmt.Errorf("apply scenario: %w", err)
	}
	if err := d.kube.sync(d.drv, now); err != nil {
		return device.Snapshot{}, fmt.Errorf("simulated kubelet: %w", err)
	}
	return d.c.Collect(ctx)
}

// CheckFiles checks what config.Load does not read: a simulated node's
// scenario and the web config file. Errors name the config file, the line
// and the field. check-config runs it.
func CheckFiles(cfg *config.Config) error {
	var errs []error
	if cfg.Devices.Source == "simulated" {
		if _, err := scenario.Load(ScenarioPath(cfg)); err != nil {
			errs = append(errs, fmt.Errorf("%s: devices.scenario: %w", cfg.Where("devices.scenario"), err))
		}
	}
	if err := checkWebConfig(cfg, nil); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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

// simAnchor pins a simulated node's timeline: virtual time Start at real
// time Origin. It is kept in the state directory so that, like a real
// node's, the timeline goes on across restarts and a restart sees the
// downtime.
type simAnchor struct {
	Scenario string    `json:"scenario"`
	Start    time.Time `json:"start"`
	Origin   time.Time `json:"origin"`
	Speed    int       `json:"speed"`
}

// simClock places the scenario so that it ends about when its fast replay
// does: virtual time never runs ahead of the wall clock (the authority
// refuses windows in the future), and after the scenario it keeps real
// time. sc.Start is moved onto that timeline.
func simClock(cfg *config.Config, sc *scenario.Scenario) (*clock.Scaled, error) {
	path := filepath.Join(cfg.StateDir, "sim-anchor.json")
	var a simAnchor
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to restart the simulation)", path, err)
		}
		if a.Scenario != sc.Path || a.Speed != cfg.Devices.Speed {
			return nil, fmt.Errorf("%s was made for scenario %s at speed %d: delete it to start a new simulation", path, a.Scenario, a.Speed)
		}
	case errors.Is(err, fs.ErrNotExist):
		now := time.Now().UTC()
		speed := time.Duration(cfg.Devices.Speed)
		a = simAnchor{Scenario: sc.Path, Origin: now, Speed: cfg.Devices.Speed,
			Start: now.Add(-sc.Duration + sc.Duration/speed).Truncate(cfg.Metering.Window)}
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
		out, _ := json.Marshal(a)
		// Atomically: a crash mid-write must not leave a truncated
		// anchor that blocks the next start.
		if err := renameio.WriteFile(path, out, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	sc.Start = a.Start
	return clock.NewScaled(a.Start, a.Origin, a.Speed, sc.Duration), nil
}
