package testutil

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSyncBufferKeepsEveryConcurrentWrite(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := b.Write([]byte("x\n")); err != nil {
					t.Error(err)
				}
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "x\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

// recorder is a testing.TB that keeps what Errorf reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheckTiled(t *testing.T) {
	tests := []struct {
		name string
		sums map[Window]int64
		want []string // substrings of the errors, in order
	}{
		{"tiled", map[Window]int64{{60, 120}: 60, {0, 60}: 60}, nil},
		{"short window", map[Window]int64{{0, 60}: 59}, []string{"records sum to 59 ms, want 60"}},
		{"hole", map[Window]int64{{0, 60}: 60, {70, 100}: 30}, []string{"window [70,100) follows one ending 60"}},
		{"overlap", map[Window]int64{{0, 60}: 60, {50, 100}: 50}, []string{"window [50,100) follows one ending 60"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			wins := CheckTiled(r, "GPU-0", tc.sums)
			if len(r.errs) != len(tc.want) {
				t.Fatalf("errors %q, want %d", r.errs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(r.errs[i], w) {
					t.Errorf("error %q, want %q in it", r.errs[i], w)
				}
			}
			for i := 1; i < len(wins); i++ {
				if wins[i].Start < wins[i-1].Start {
					t.Errorf("windows not in order: %v", wins)
				}
			}
		})
	}
}

func TestNotifySocketReadsAssignments(t *testing.T) {
	sock := ListenNotify(t, 2*time.Second)
	if got := os.Getenv("WATCHDOG_USEC"); got != "2000000" {
		t.Errorf("WATCHDOG_USEC=%q, want 2000000", got)
	}
	conn, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET")) //nolint:gosec // G704: the socket ListenNotify just made
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, msg := range []string{"WATCHDOG=1", "STATUS=starting", "READY=1\nSTATUS=metering"} {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if m := sock.Expect(t, "READY", 5*time.Second, "WATCHDOG"); m["STATUS"] != "metering" {
		t.Errorf("READY came with %v", m)
	}
	if m := sock.Next(t, 10*time.Millisecond); m != nil {
		t.Errorf("after the last datagram: %v, want nothing", m)
	}
}
