package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/internal/exitcode"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// A spool with two sealed batches, the first dead-lettered: status and
// dead-letters say so, requeue puts it back byte for byte, verify passes,
// and verify fails on a damaged file without touching it.
func TestSpoolCommands(t *testing.T) {
	state := t.TempDir()
	cfgPath := writeFile(t, "agent.yaml", fmt.Sprintf("node: {id: n1, provider: p}\nhttp: {listen: '127.0.0.1:0'}\nstate_dir: %q\n", state))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Path: cfg.SpoolPath()})
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, ed25519.SeedSize)
	sealer, _ := ledger.NewSealer("n1", ed25519.NewKeyFromSeed(seed), time.Now)
	seal := func(first uint64, prev string, recs []protocol.Record) (ledger.Sealed, error) {
		return sealer.Seal(context.Background(), first, prev, recs)
	}
	gpu := "GPU-00000000-0000-4000-8000-000000000000"
	for i := range 2 {
		s := time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC)
		r := protocol.Record{Node: "n1", Provider: "p", WindowStart: s, WindowEnd: s.Add(time.Minute), Kind: protocol.KindIdle,
			GPUUUID: gpu, ParentUUID: gpu, Model: "H100", SliceNum: 1, SliceDen: 1, GPUMillis: 60_000, UtilizationPercent: -1, EnergyMillijoules: -1}
		r.ID = r.ComputeID()
		if err := sp.Append(context.Background(), []protocol.Record{r}, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sp.SealNext(context.Background(), seal, 1); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := sp.Unacked(context.Background(), 0)
	if err := sp.DeadLetter(context.Background(), 1, "400 invalid-record: test"); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	code, out, errOut := runCLI("spool", "status", "--config", cfgPath)
	if code != exitcode.OK || !strings.Contains(out, "sealed head:    2") || !strings.Contains(out, "dead letters:   1") {
		t.Fatalf("status: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCLI("spool", "dead-letters", "--config", cfgPath)
	if code != exitcode.OK || !strings.Contains(out, "1..1\t") || !strings.Contains(out, "invalid-record") {
		t.Fatalf("dead-letters: %d %s", code, out)
	}
	if code, _, _ := runCLI("spool", "requeue", "--config", cfgPath); code != exitcode.Usage {
		t.Fatalf("requeue without a choice: exit %d", code)
	}
	code, out, errOut = runCLI("spool", "requeue", "--first-seq", "1", "--config", cfgPath)
	if code != exitcode.OK || !strings.Contains(out, "requeued batch 1..1") {
		t.Fatalf("requeue: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCLI("spool", "verify", "--config", cfgPath)
	if code != exitcode.OK || !strings.Contains(out, "0 problems") {
		t.Fatalf("verify: %d %s", code, out)
	}
	sp, err = spool.Open(spool.Options{Path: cfg.SpoolPath(), RetainAcked: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := sp.Unacked(context.Background(), 0)
	if len(after) != 2 || string(after[0].Envelope) != string(before[0].Envelope) {
		t.Fatal("requeued batch is not the sealed bytes")
	}
	// Acknowledged batches are retained and shown; a log conflict is
	// shown and accept-log clears it.
	if err := sp.Ack(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetLogConflict(context.Background(), "inconsistent: test"); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	code, out, _ = runCLI("spool", "status", "--config", cfgPath)
	if code != exitcode.OK || !strings.Contains(out, "retained acked: 2 batches") || !strings.Contains(out, "seqs 1..2") ||
		!strings.Contains(out, "LOG CONFLICT:   inconsistent: test") {
		t.Fatalf("status with retained batches: %d %s", code, out)
	}
	code, out, _ = runCLI("spool", "accept-log", "--config", cfgPath)
	if code != exitcode.OK || !strings.Contains(out, "log conflict cleared (inconsistent: test)") {
		t.Fatalf("accept-log: %d %s", code, out)
	}
	code, out, _ = runCLI("spool", "status", "--config", cfgPath)
	if code != exitcode.OK || strings.Contains(out, "LOG CONFLICT") {
		t.Fatalf("status after accept-log: %d %s", code, out)
	}

	if err := os.Truncate(cfg.SpoolPath(), 3*4096); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("spool", "verify", "--config", cfgPath)
	if code != exitcode.Failure || !strings.Contains(out, "DAMAGED") {
		t.Fatalf("verify of a damaged file: %d %s", code, out)
	}
	if _, err := os.Stat(cfg.SpoolPath()); err != nil {
		t.Fatal("verify moved the damaged file:", err)
	}
}
