package agent_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket is a stand-in for systemd's notification socket: a real
// unixgram socket named in NOTIFY_SOCKET.
type notifySocket struct {
	conn *net.UnixConn
}

// listenNotify opens the socket and points NOTIFY_SOCKET at it, with a
// watchdog of WATCHDOG_USEC=watchdog (0: none) for this process.
func listenNotify(t *testing.T, watchdog time.Duration) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s") // well under a socket path's 108 bytes
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
	}
	return &notifySocket{conn: conn}
}

// next returns the next datagram's assignments, or nil when none comes
// within d.
func (s *notifySocket) next(t *testing.T, d time.Duration) map[string]string {
	t.Helper()
	if err := s.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	msg := map[string]string{}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			msg[k] = v
		}
	}
	return msg
}

// event is what a datagram tells systemd, its STATUS= aside.
func event(m map[string]string) string {
	for _, k := range []string{"READY", "RELOADING", "STOPPING", "WATCHDOG"} {
		if m[k] == "1" {
			return k
		}
	}
	return ""
}

// expect reads datagrams until one carries want, failing on any other
// event than those in skip, or after d.
func (s *notifySocket) expect(t *testing.T, want string, d time.Duration, skip ...string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %s within %s", want, d)
		}
		m := s.next(t, left)
		if m == nil {
			t.Fatalf("no %s within %s", want, d)
		}
		switch ev := event(m); {
		case ev == want:
			return m
		case ev == "":
		default:
			skipped := false
			for _, k := range skip {
				skipped = skipped || ev == k
			}
			if !skipped {
				t.Fatalf("got %s (%v) while waiting for %s", ev, m, want)
			}
		}
	}
}

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
	sock := listenNotify(t, 200*time.Millisecond)
	r := startDaemon(t, simConfig(t, ""))

	ready := sock.expect(t, "READY", 20*time.Second)
	if !strings.Contains(ready["STATUS"], "metering node test-node") {
		t.Errorf("READY came with STATUS=%q, want what is metered", ready["STATUS"])
	}
	for range 2 {
		sock.expect(t, "WATCHDOG", 2*time.Second)
	}

	before := monotonicMicros(t)
	if err := r.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after := monotonicMicros(t)
	reloading := sock.expect(t, "RELOADING", 2*time.Second, "WATCHDOG")
	stamp, err := strconv.ParseInt(reloading["MONOTONIC_USEC"], 10, 64)
	if err != nil || stamp < before || stamp > after {
		t.Errorf("RELOADING with MONOTONIC_USEC=%q, want CLOCK_MONOTONIC µs in [%d, %d]", reloading["MONOTONIC_USEC"], before, after)
	}
	again := sock.expect(t, "READY", 2*time.Second) // nothing in between
	if !strings.Contains(again["STATUS"], "config reloaded") {
		t.Errorf("READY after the reload came with STATUS=%q", again["STATUS"])
	}
	sock.expect(t, "WATCHDOG", 2*time.Second)

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	sock.expect(t, "STOPPING", 2*time.Second, "WATCHDOG")
	if m := sock.next(t, 300*time.Millisecond); m != nil {
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
