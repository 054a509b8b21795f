package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/attribution"
)

// reloadable are the settings a running agent takes from a reloaded
// config file, and when. Any other change refuses the whole reload: the
// running config stays, and a restart applies it. Not reloadable, and why:
//
//   - node.*, signing.key_file, spool.*, state_dir: they are the node's
//     identity and its durable state; records already sealed or spooled
//     belong to them.
//   - metering.window, metering.max_hold: the meter integrates with them;
//     changing them mid-run would break windows that tile time.
//   - devices.*, attribution.host_root: what the agent opened at start.
//   - authority.*: the reporter is built once (TLS client, batch size,
//     counters); a restart resumes delivery from the spool just as well.
//   - http.*, log.format, output.records_file: bound or opened at start.
//     The web config file's content, not its path, applies to every new
//     connection without any reload (exporter-toolkit reads it each time).
var reloadable = map[string]string{
	"attribution.rules":      "from the next window",
	"metering.poll_interval": "from the next window",
	"log.level":              "at once",
}

// hints add advice to the refusal of a field.
var hints = map[string]string{
	"metering.max_hold": "its default is 3 x poll_interval: to change poll_interval alone, set max_hold to the running value",
}

// errStopped is Reload's answer once the daemon has stopped metering.
var errStopped = errors.New("the agent is stopping")

type reloadRequest struct{ done chan error }

// Reload re-reads the config file the daemon was started from, between
// two metering cycles, and applies the settings that may change while it
// runs (see reloadable). It returns nil when the file was applied (or
// changed nothing), and an error naming the file, the line and the field
// when it was refused: then nothing changed. Either way the daemon goes on
// metering, and the outcome is logged and exported as
// gpumeter_config_last_reload_successful.
func (d *Daemon) Reload(ctx context.Context) error {
	req := reloadRequest{done: make(chan error, 1)}
	select {
	case d.reloads <- req:
	case <-d.done:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reload runs on the loop goroutine, which owns the pipeline, so nothing
// it changes needs a lock. systemd hears RELOADING=1 first and READY=1
// after, whatever the outcome.
func (d *Daemon) reload() error {
	d.notify.reloading()
	err := d.applyReload()
	now := time.Now()
	d.metrics.configLoaded(err == nil, now)
	if err != nil {
		d.reloadNote = "; last reload refused at " + now.Format(time.DateTime) + ", see the log"
	} else {
		d.reloadNote = "; config reloaded at " + now.Format(time.DateTime)
	}
	d.notify.ready(d.statusLine())
	return err
}

func (d *Daemon) applyReload() error {
	old := d.config()
	next, err := config.Load(old.Path())
	if err != nil {
		d.log.Error("config reload refused: the file is invalid; the running config stays", "err", err)
		return fmt.Errorf("config reload refused: %w", err)
	}
	changes := config.Diff(old, next)
	var fixed []string
	for _, c := range changes {
		if _, ok := reloadable[c.Field]; !ok {
			s := next.Where(c.Field) + ": " + c.String()
			if h := hints[c.Field]; h != "" {
				s += " (" + h + ")"
			}
			fixed = append(fixed, s)
		}
	}
	if len(fixed) > 0 {
		d.log.Error("config reload refused: a setting that only changes with a restart differs; the running config stays",
			"changed", strings.Join(fixed, "; "))
		return fmt.Errorf("config reload refused: %s: only changes with a restart", strings.Join(fixed, "; "))
	}
	if len(changes) == 0 {
		d.log.Info("config reloaded: nothing changed", "file", old.Path())
		d.cfg.Store(next)
		return nil
	}

	// Build everything that can fail before changing anything.
	var attr *attribution.Attributor
	var level slog.Level
	for _, c := range changes {
		switch c.Field {
		case "attribution.rules":
			attr, err = attribution.New(next.AttributionConfig(), d.src.hostRoot, attributionOptions(d.log, d.pods, d.src.squeue, d.src.watcher)...)
			if err != nil {
				d.log.Error("config reload refused: the attribution rules cannot be used; the running config stays",
					"file", next.Where("attribution.rules"), "err", err)
				return fmt.Errorf("config reload refused: %s: attribution.rules: %w", next.Where("attribution.rules"), err)
			}
		case "log.level":
			if err := level.UnmarshalText([]byte(next.Log.Level)); err != nil {
				d.log.Error("config reload refused: log.level is invalid; the running config stays", "file", next.Where("log.level"), "err", err)
				return fmt.Errorf("config reload refused: %s: log.level: %w", next.Where("log.level"), err)
			}
		}
	}

	// The window open now keeps the running settings; the next one
	// starts with the new ones.
	window := old.Metering.Window
	from := d.src.clock.Now().Truncate(window).Add(window)
	if attr != nil {
		from = d.pipeline.SetAttributor(attr, window)
	}
	names := make([]string, len(changes))
	for i, c := range changes {
		names[i] = c.String()
	}
	d.log.Info("config reloaded", "file", old.Path(), "changed", strings.Join(names, "; "), "next_window", from)
	for _, c := range changes {
		switch c.Field {
		case "metering.poll_interval":
			d.nextPoll, d.nextPollFrom = next.Metering.PollInterval, from
		case "log.level":
			d.level.Set(level)
		}
	}
	d.cfg.Store(next)
	return nil
}
