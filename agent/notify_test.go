package agent_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gpumeter/gpumeter/internal/testutil"
)

func monotonicMicros(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestSystemdNotifySequence: what systemd hears from the agent over its
// life, in order: READY (with a STATUS), watchdog pings, RELOADING with a
// CLOCK_MONOTONIC stamp taken during the reload, READY, then STOPPING.
func TestSystemdNotifySequence(t *testing.T) {
	sock := testutil.ListenNotify(t, 200*time.Millisecond)
	r := startDaemon(t, simConfig(t, ""))

	ready := sock.Expect(t, "READY", 20*time.Second)
	if !strings.Contains(ready["STATUS"], "metering node test-node") {
		t.Errorf("READY came with STATUS=%q, want what is metered", ready["STATUS"])
	}
	for range 2 {
		sock.Expect(t, "WATCHDOG", 2*time.Second)
	}

	before := monotonicMicros(t)
	if err := r.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after := monotonicMicros(t)
	reloading := sock.Expect(t, "RELOADING", 2*time.Second, "WATCHDOG")
	stamp, err := strconv.ParseInt(reloading["MONOTONIC_USEC"], 10, 64)
	if err != nil || stamp < before || stamp > after {
		t.Errorf("RELOADING with MONOTONIC_USEC=%q, want CLOCK_MONOTONIC µs in [%d, %d]", reloading["MONOTONIC_USEC"], before, after)
	}
	again := sock.Expect(t, "READY", 2*time.Second) // nothing in between
	if !strings.Contains(again["STATUS"], "config reloaded") {
		t.Errorf("READY after the reload came with STATUS=%q", again["STATUS"])
	}
	sock.Expect(t, "WATCHDOG", 2*time.Second)

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	sock.Expect(t, "STOPPING", 2*time.Second, "WATCHDOG")
	if m := sock.Next(t, 300*time.Millisecond); m != nil {
		t.Errorf("after STOPPING and the end of Run: %v, want nothing more (no watchdog pings from a stopped loop)", m)
	}
}

// TestNoNotifySocketIsANoOp: without NOTIFY_SOCKET the agent runs and
// reloads as usual.
func TestNoNotifySocketIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "100000")
	r := startDaemon(t, simConfig(t, ""))
	waitCycles(t, r, 2)
	if err := r.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
