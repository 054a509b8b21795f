package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/internal/testutil"
)

// hangingCollector blocks inside Collect, as a hung driver call does, from
// the moment hang is called until release.
type hangingCollector struct {
	Collector
	mu      sync.Mutex
	gate    chan struct{} // nil: collect normally
	entered chan struct{} // closed when a Collect is stuck
}

func (h *hangingCollector) hang() (entered <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gate, h.entered = make(chan struct{}), make(chan struct{})
	return h.entered
}

func (h *hangingCollector) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
}

func (h *hangingCollector) Collect(ctx context.Context) (device.Snapshot, error) {
	h.mu.Lock()
	gate, entered := h.gate, h.entered
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-entered:
		default:
			close(entered)
		}
		<-gate
	}
	return h.Collector.Collect(ctx)
}

// TestWatchdogStopsWhileTheLoopHangs: the watchdog pings come from the
// metering loop, so a cycle stuck in the device layer stops them (and
// systemd, after WatchdogSec, restarts the agent); they resume when it
// returns.
func TestWatchdogStopsWhileTheLoopHangs(t *testing.T) {
	const every = 50 * time.Millisecond // pings at half WATCHDOG_USEC
	sock := testutil.ListenNotify(t, 2*every)

	scenario, err := filepath.Abs("../configs/scenarios/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
	body := fmt.Sprintf("node: {id: n, provider: p}\ndevices: {source: simulated, scenario: %q, speed: 60}\nhttp: {listen: '127.0.0.1:0'}\nstate_dir: %q\n", scenario, t.TempDir())
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	hc := &hangingCollector{Collector: d.pipeline.Collector}
	d.pipeline.Collector = hc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		hc.release() // a failed test must not leave the loop stuck
		cancel()
		<-done //nolint:errcheck // only waits for Run to stop; the watchdog is what the test checks
	}()

	pings := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for got := 0; got < n; {
			msg := sock.Next(t, time.Until(deadline))
			if msg == nil {
				t.Fatalf("%d of %d watchdog pings within %s", got, n, within)
			}
			if msg["WATCHDOG"] == "1" {
				got++
			}
		}
	}
	pings(3, 20*time.Second)

	entered := hc.hang()
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the loop never reached the device layer")
	}
	// The loop pinged, if at all, before it entered Collect: drain those
	// (a datagram is queued once sent).
	for i := 0; i < 10 && sock.Next(t, time.Millisecond) != nil; i++ {
	}
	if msg := sock.Next(t, 6*every); msg != nil {
		t.Fatalf("the loop hangs in Collect, but systemd heard %v", msg)
	}

	hc.release()
	pings(2, 20*time.Second)
}
