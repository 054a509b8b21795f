package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/internal/exitcode"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/metering/spool"
)

const spoolUsage = `usage: gpumeter spool COMMAND --config FILE
Run while the agent is stopped (the spool file's lock says if it is not).
  status                        heads, pending, unacknowledged, dead letters, quarantined, size
  dead-letters                  list the dead-lettered batches
  requeue --first-seq N | --all send dead-lettered batches again, byte for byte as sealed
  verify                        bbolt check, every batch's hash, every pending entry; exit 1 on damage
  re-anchor                     restart the chain on the authority's head (signed GET head)
  accept-log                    after investigating a log conflict: trust the authority's current
                                log from now on (forget kept checkpoints and the pinned key)
`

// cmdSpool is `gpumeter spool ...`: the operator's way back from every
// fault the spool can be in (docs/operations.md, "When usage is stuck").
func cmdSpool(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, spoolUsage)
		return exitcode.Usage
	}
	sub := args[0]
	fs := flag.NewFlagSet("spool "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/gpumeter/agent.yaml", "agent config file")
	first := fs.Uint64("first-seq", 0, "requeue: the dead letter starting at this sequence")
	all := fs.Bool("all", false, "requeue: every dead letter")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		fmt.Fprint(stderr, spoolUsage)
		return exitcode.Usage
	}
	switch sub {
	case "status", "dead-letters", "requeue", "verify", "re-anchor", "accept-log":
	default:
		fmt.Fprintf(stderr, "gpumeter spool: unknown command %q\n\n%s", sub, spoolUsage)
		return exitcode.Usage
	}
	if sub == "requeue" && (*all == (*first != 0)) {
		fmt.Fprintln(stderr, "gpumeter spool requeue: give exactly one of --first-seq N and --all")
		return exitcode.Usage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitcode.Config
	}
	opts := spool.Options{Path: cfg.SpoolPath(), MaxBytes: cfg.Spool.MaxBytes, MergeWindow: cfg.Spool.MergeWindow,
		Window: cfg.Metering.Window, NoRepair: true, RetainAcked: cfg.Spool.RetainAcked}
	sp, err := spool.Open(opts)
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool %s: %v\n", sub, err)
		if sub == "verify" && errors.Is(err, spool.ErrDamaged) {
			fmt.Fprintln(stdout, "DAMAGED: the agent moves this file aside at its next start and re-anchors on the authority's head")
		}
		return exitcode.Failure
	}
	defer func() { _ = sp.Close() }()
	switch sub {
	case "status":
		return spoolStatus(sp, cfg, stdout)
	case "dead-letters":
		return spoolDeadLetters(ctx, sp, stdout, stderr)
	case "requeue":
		bs, err := sp.Requeue(ctx, *first, *all)
		if err != nil {
			fmt.Fprintf(stderr, "gpumeter spool requeue: %v\n", err)
			return exitcode.Failure
		}
		for _, b := range bs {
			fmt.Fprintf(stdout, "requeued batch %d..%d (hash %s): sent again as sealed at the agent's next start\n", b.FirstSeq, b.LastSeq, b.Hash)
		}
		fmt.Fprintf(stdout, "%d batches requeued\n", len(bs))
		return exitcode.OK
	case "verify":
		return spoolVerify(ctx, sp, stdout, stderr)
	case "accept-log":
		was, err := sp.AcceptLog(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "gpumeter spool accept-log: %v\n", err)
			return exitcode.Failure
		}
		if was == "" {
			fmt.Fprintln(stdout, "no log conflict was held; kept checkpoints and the pinned key are forgotten")
		} else {
			fmt.Fprintf(stdout, "log conflict cleared (%s); the authority's next checkpoint is trusted as the new start\n", was)
		}
		return exitcode.OK
	default:
		return spoolReanchor(ctx, sp, cfg, stdout, stderr)
	}
}

func spoolStatus(sp *spool.Spool, cfg *config.Config, stdout io.Writer) int {
	acked, sealed, hash := sp.Head()
	st := sp.Stats()
	fmt.Fprintf(stdout, "spool:          %s (%d bytes)\n", cfg.SpoolPath(), st.FileBytes)
	fmt.Fprintf(stdout, "sealed head:    %d (hash %s)\nacked head:     %d\n", sealed, hash, acked)
	fmt.Fprintf(stdout, "pending:        %d records, %d bytes\n", st.PendingRecords, st.PendingBytes)
	fmt.Fprintf(stdout, "unacknowledged: %d batches, %d bytes\n", st.UnackedBatches, st.UnackedBytes)
	fmt.Fprintf(stdout, "retained acked: %d batches, %d bytes (kept %s after their ack)\n", st.AckedBatches, st.AckedBytes, cfg.Spool.RetainAcked)
	if kept, err := sp.Retained(context.Background()); err == nil && len(kept) > 0 {
		first, last := kept[0], kept[len(kept)-1]
		fmt.Fprintf(stdout, "                seqs %d..%d, acked %s .. %s\n", first.FirstSeq, last.LastSeq,
			first.AckedAt.Format(time.RFC3339), last.AckedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "dead letters:   %d\nquarantined:    %d\n", st.DeadLetters, st.Quarantined)
	fmt.Fprintf(stdout, "log checkpoint: size %d\n", sp.LogSize())
	if c := sp.LogConflict(); c != "" {
		fmt.Fprintf(stdout, "LOG CONFLICT:   %s (delivery held; investigate, then gpumeter spool accept-log)\n", c)
	}
	if st.NeedsAnchor {
		fmt.Fprintln(stdout, "needs anchor:   yes (the agent anchors it on the authority's head when it reaches it)")
	}
	return exitcode.OK
}

func spoolDeadLetters(ctx context.Context, sp *spool.Spool, stdout, stderr io.Writer) int {
	dl, err := sp.DeadLetters(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool dead-letters: %v\n", err)
		return exitcode.Failure
	}
	for _, d := range dl {
		state := "dead"
		if d.ReanchoredAt != nil {
			state = "re-anchored " + d.ReanchoredAt.Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%d..%d\t%s\t%s\t%s\n", d.FirstSeq, d.LastSeq, d.At.Format(time.RFC3339), state, d.Reason)
	}
	fmt.Fprintf(stdout, "%d dead-lettered batches\n", len(dl))
	return exitcode.OK
}

func spoolVerify(ctx context.Context, sp *spool.Spool, stdout, stderr io.Writer) int {
	rep, err := sp.Verify(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool verify: %v\n", err)
		return exitcode.Failure
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "DAMAGED:", p)
	}
	fmt.Fprintf(stdout, "checked %d pending entries, %d batches, %d dead letters: %d problems\n",
		rep.PendingEntries, rep.Batches, rep.DeadLetters, len(rep.Problems))
	if len(rep.Problems) > 0 {
		return exitcode.Failure
	}
	return exitcode.OK
}

func spoolReanchor(ctx context.Context, sp *spool.Spool, cfg *config.Config, stdout, stderr io.Writer) int {
	if cfg.Authority.URL == "" {
		fmt.Fprintln(stderr, "gpumeter spool re-anchor: no authority.url in the config")
		return exitcode.Config
	}
	key, err := signing.LoadKeyFile(cfg.KeyFile())
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool re-anchor: signing.key_file: %v\n", err)
		return exitcode.Config
	}
	sealer, err := ledger.NewSealer(cfg.Node.ID, key, time.Now)
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool re-anchor: %v\n", err)
		return exitcode.Config
	}
	a := cfg.Authority
	rep, err := reporter.New(reporter.Options{URL: a.URL, Node: cfg.Node.ID, CAFile: a.CAFile, CertFile: a.CertFile,
		KeyFile: a.KeyFile, Timeout: a.Timeout, Sealer: sealer, Spool: sp, Key: key})
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool re-anchor: authority: %v\n", err)
		return exitcode.Config
	}
	h, err := rep.Head(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool re-anchor: %v\n", err)
		return exitcode.Failure
	}
	res, err := sp.Anchor(ctx, h.Head, h.HeadHash, h.LastWindowEnd, spool.AnchorOptions{ResealDeadLetters: true})
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter spool re-anchor: %v\n", err)
		return exitcode.Failure
	}
	fmt.Fprintf(stdout, "anchored on the authority's head %d: the next batch is seq %d, chained to %s\n", h.Head, h.Head+1, h.HeadHash)
	fmt.Fprintf(stdout, "acknowledged %d batches the authority holds; %d batches (%d dead-lettered) go back to pending, %d records, to be sealed again; %d unreadable\n",
		res.AckedBatches, res.UnsealedBatches, res.ResealDeadLetters, res.UnsealedRecords, res.LostBatches)
	switch {
	case res.GapRecords > 0:
		fmt.Fprintf(stdout, "recorded %d spool_lost gap records from %s\n", res.GapRecords, res.GapFrom.Format(time.RFC3339))
	case res.GapPending:
		fmt.Fprintf(stdout, "a spool_lost gap from %s is recorded with the first window the agent meters\n", res.GapFrom.Format(time.RFC3339))
	}
	return exitcode.OK
}
