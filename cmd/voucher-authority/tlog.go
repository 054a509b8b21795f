package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/signing"
)

// The verifiable log's commands and serve's part of it (docs/protocol.md,
// "The verifiable log").

func logCmd() *cobra.Command {
	return group("log", "the verifiable log: its key and checkpoints",
		logKeygenCmd(), logCheckpointCmd())
}

func logKeygenCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keygen FILE",
		Short: "create the log's signing key (0600, never overwriting) and print its verifier key",
		Long: `keygen writes a new Ed25519 key for the verifiable log to FILE (mode 0600;
an existing file is never overwritten) and prints the note verifier key
that agents and auditors pin: ORIGIN+HASH+KEY. ORIGIN (--origin) must be
the config's verifiable_log.origin.`,
		Args: cobra.ExactArgs(1),
	}
	origin := c.Flags().String("origin", "", "the log's origin, as in verifiable_log.origin (e.g. authority.example.com/log)")
	required(c, "origin")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
		path := args[0]
		if err := (config.VerifiableLog{KeyFile: path, Origin: *origin}).Check(); err != nil {
			fmt.Fprintf(stderr, "voucher-authority log keygen: --origin: %v\n", err)
			return exitStatus(exitUsage)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			fmt.Fprintf(stderr, "voucher-authority log keygen: %v\n", err)
			return exitStatus(exitFailure)
		}
		if _, err := signing.GenerateKeyFile(path); err != nil {
			fmt.Fprintf(stderr, "voucher-authority log keygen: %v\n", err)
			return exitStatus(exitFailure)
		}
		sg, err := loadLogSigner(config.VerifiableLog{KeyFile: path, Origin: *origin})
		if err != nil {
			fmt.Fprintf(stderr, "voucher-authority log keygen: %v\n", err)
			return exitStatus(exitUsage)
		}
		fmt.Fprintf(stdout, "key_file: %s\nverifier_key: %s\n", path, sg.VerifierKey())
		return nil
	}
	return c
}

func logCheckpointCmd() *cobra.Command {
	d := dbLeaf("checkpoint", "print the newest checkpoint the log signed")
	return d.run(withStore, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		size, _, err := st.LogSize(ctx)
		if err != nil {
			return fmt.Errorf("log checkpoint: %w", err)
		}
		// The newest kept: the tree may have grown since (the CLI
		// holds no key), and only the server signs.
		notes, err := st.LogCheckpoints(ctx, 0, 0)
		if err != nil {
			return fmt.Errorf("log checkpoint: %w", err)
		}
		if len(notes) == 0 {
			return fmt.Errorf("log checkpoint: none signed yet (size %d)", size)
		}
		_, err = stdout.Write(notes[len(notes)-1])
		return err
	})
}

// loadLogSigner reads the log's key (0600, refused otherwise) and makes
// its checkpoint signer; nil, nil without a verifiable_log section.
func loadLogSigner(l config.VerifiableLog) (*tlog.Signer, error) {
	if !l.Enabled() {
		return nil, nil
	}
	k, err := signing.LoadKeyFile(l.KeyFile)
	if err != nil {
		return nil, err
	}
	return tlog.NewSigner(l.Origin, k)
}

// checkLog is the preflight's check of the verifiable_log section: the
// key must load; without the section, check-config warns.
func checkLog(cfg config.Config, connect bool, fail, warn func(field, format string, args ...any)) {
	if !cfg.VerifiableLog.Enabled() {
		if connect {
			warn("verifiable_log", "not set: the authority keeps no verifiable log, so nodes and auditors cannot prove what it stored (create a key with voucher-authority log keygen)")
		}
		return
	}
	if _, err := loadLogSigner(cfg.VerifiableLog); err != nil {
		fail("verifiable_log.key_file", "%v", err)
	}
}

// startLog starts the verifiable log with the configured key (nil without
// a verifiable_log section) and says so in the log.
func startLog(ctx context.Context, cfg config.Config, st *store.Store, log *slog.Logger) (*tlog.Signer, error) {
	sg, err := loadLogSigner(cfg.VerifiableLog)
	if err != nil {
		return nil, fmt.Errorf("verifiable_log.key_file: %w", err)
	}
	if sg == nil {
		log.Warn("serving without a verifiable log (no verifiable_log section): answers carry no receipt")
		return nil, nil
	}
	if err := st.StartLog(ctx, sg); err != nil {
		return nil, err
	}
	log.Info("verifiable log started", slog.String("origin", sg.Origin()), slog.String("verifier_key", sg.VerifierKey()))
	return sg, nil
}
