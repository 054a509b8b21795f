package testutil

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NotifySocket is a stand-in for systemd's notification socket: a real
// unixgram socket named in NOTIFY_SOCKET.
type NotifySocket struct {
	conn *net.UnixConn
}

// ListenNotify opens the socket and points NOTIFY_SOCKET at it, with a
// watchdog of WATCHDOG_USEC=watchdog (0: none) for this process and the
// processes it starts. The socket is closed when t ends.
func ListenNotify(t testing.TB, watchdog time.Duration) *NotifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s") // well under a socket path's 108 bytes
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
	}
	return &NotifySocket{conn: conn}
}

// Next returns the next datagram's assignments, or nil when none comes
// within d.
func (s *NotifySocket) Next(t testing.TB, d time.Duration) map[string]string {
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

// NotifyEvents are the events a datagram may tell systemd.
var NotifyEvents = []string{"READY", "RELOADING", "STOPPING", "WATCHDOG"}

// event is what a datagram tells systemd, its STATUS= aside.
func event(m map[string]string) string {
	for _, k := range NotifyEvents {
		if m[k] == "1" {
			return k
		}
	}
	return ""
}

// Expect reads datagrams until one carries want (want=1), failing on any
// other event than those in skip, or after d.
func (s *NotifySocket) Expect(t testing.TB, want string, d time.Duration, skip ...string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %s within %s", want, d)
		}
		m := s.Next(t, left)
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
