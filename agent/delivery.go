package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// delivery is the node's durable path for closed windows: each batch of
// records goes to the spool together with the meter's checkpoint, in one
// fsynced transaction, and the reporter takes it from there. Nothing the
// meter produced is dropped here: what the spool refuses (full) is held in
// memory and offered again with the next windows.
type delivery struct {
	log      *slog.Logger
	spool    *spool.Spool
	reporter *reporter.Reporter // nil when no authority is configured
	instance string             // this copy's instance id (agent/instance.go)
	// maxClockOffset is authority.max_clock_offset, for its gauge.
	maxClockOffset time.Duration

	mu   sync.Mutex
	held []protocol.Record // records the spool could not take yet
}

// openDelivery opens the spool (creating the state directory owner-only),
// loads the signing key when an authority is configured, and resumes the
// meter from the spool's checkpoint so downtime becomes a gap.
func openDelivery(cfg *config.Config, log *slog.Logger, mt *meter.Meter) (*delivery, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.SpoolPath()), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	sp, err := spool.Open(spool.Options{Path: cfg.SpoolPath(), MaxBytes: cfg.Spool.MaxBytes, MergeWindow: cfg.Spool.MergeWindow})
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", cfg.SpoolPath(), err)
	}
	d := &delivery{log: log, spool: sp, maxClockOffset: cfg.Authority.MaxClockOffset}
	if err := d.resume(mt); err != nil {
		sp.Close()
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		sp.Close()
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	if d.instance, err = loadInstance(cfg.StateDir, currentHostFacts(), time.Now(), log); err != nil {
		sp.Close()
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if cfg.Authority.URL == "" {
		log.Warn("no authority.url: records are metered and spooled, not reported", "instance", d.instance)
		return d, nil
	}
	key, err := signing.LoadKeyFile(cfg.KeyFile())
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("signing.key_file: %w", err)
	}
	sealer, err := ledger.NewSealer(cfg.Node.ID, key, time.Now)
	if err == nil {
		sealer, err = sealer.WithInstance(d.instance)
	}
	if err != nil {
		sp.Close()
		return nil, err
	}
	a := cfg.Authority
	d.reporter, err = reporter.New(reporter.Options{
		URL: a.URL, Node: cfg.Node.ID,
		CAFile: a.CAFile, CertFile: a.CertFile, KeyFile: a.KeyFile,
		Timeout: a.Timeout, MaxBatchRecords: a.MaxBatchRecords, MaxClockOffset: a.MaxClockOffset,
		Log: log, Sealer: sealer, Spool: sp, Key: key,
	})
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("authority: %w", err)
	}
	log.Info("reporting to the voucher authority", "url", a.URL, "key_id", sealer.KeyID(), "instance", d.instance)
	return d, nil
}

// resume hands the spool's last checkpoint to the meter: the time between
// it and the first observation becomes an agent_down gap.
func (d *delivery) resume(mt *meter.Meter) error {
	raw, err := d.spool.Checkpoint()
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if raw == nil {
		return nil // a new node
	}
	var cp meter.Checkpoint
	if err := cp.UnmarshalBinary(raw); err != nil {
		return fmt.Errorf("spool checkpoint: %w", err)
	}
	if err := mt.Resume(cp); err != nil {
		return fmt.Errorf("resume meter: %w", err)
	}
	d.log.Info("resuming after the last checkpoint; the time since is recorded as agent_down",
		"closed_until", cp.ClosedUntil, "units", len(cp.Units))
	return nil
}

// store appends records with the checkpoint that matches them. It returns
// whether the spool was full (the records are then held in memory).
func (d *delivery) store(ctx context.Context, recs []protocol.Record, cp meter.Checkpoint) (full bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(recs) == 0 && len(d.held) == 0 {
		return false, nil
	}
	raw, err := cp.MarshalBinary()
	if err != nil {
		return false, fmt.Errorf("encode checkpoint: %w", err)
	}
	all := append(d.held, recs...)
	switch err := d.spool.Append(ctx, all, raw); {
	case errors.Is(err, spool.ErrFull):
		if d.held == nil {
			d.log.Error("spool full even after merging old windows: metering continues in memory; a crash now loses the time since the last checkpoint (recorded as agent_down)",
				"held_records", len(all))
		}
		d.held = all
		return true, nil
	case err != nil:
		d.held = all
		return false, fmt.Errorf("append to spool: %w", err)
	}
	if d.held != nil {
		d.log.Info("spool accepts records again", "records", len(all))
	}
	d.held = nil
	if d.reporter != nil {
		d.reporter.Notify()
	}
	return false, nil
}

// heldRecords is how many records wait in memory for room in the spool.
func (d *delivery) heldRecords() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.held)
}

func (d *delivery) close() error { return d.spool.Close() }
