package agent

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier tells systemd (Type=notify) how the daemon is doing, through
// the socket the service manager names in NOTIFY_SOCKET (sd_notify(3)).
// Without that variable every call is a no-op, so the agent behaves the
// same under systemd, in a container or in a terminal.
//
// The protocol the daemon follows:
//   - READY=1 once /metrics listens and the first metering cycle succeeded;
//   - WATCHDOG=1 every half WATCHDOG_USEC, sent by the metering loop itself
//     between cycles, so a loop stuck in a driver call or a disk write stops
//     pinging and systemd restarts the agent;
//   - RELOADING=1 with MONOTONIC_USEC at the start of a reload (SIGHUP), and
//     READY=1 when it is done, applied or refused (systemd 252 has no
//     Type=notify-reload: the unit's ExecReload sends the signal);
//   - STOPPING=1 when shutdown begins;
//   - STATUS= with a line for `systemctl status` alongside each.
type notifier struct {
	log *slog.Logger
	// watchdog is WATCHDOG_USEC when systemd expects pings from this
	// process; 0 when it does not.
	watchdog time.Duration
	warnOnce sync.Once
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not pinging it", "err", err)
	}
	n.watchdog = wd
	return n
}

// send writes one datagram of newline-separated assignments. A failure is
// logged once: systemd then restarts or times out the unit, which says more
// than a log line per ping would.
func (n *notifier) send(lines ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		n.warnOnce.Do(func() { n.log.Warn("cannot notify systemd", "err", err) })
	}
}

func (n *notifier) ready(status string)  { n.send(daemon.SdNotifyReady, "STATUS="+status) }
func (n *notifier) status(status string) { n.send("STATUS=" + status) }
func (n *notifier) ping()                { n.send(daemon.SdNotifyWatchdog) }

func (n *notifier) reloading() {
	n.send(daemon.SdNotifyReloading, "MONOTONIC_USEC="+strconv.FormatInt(monotonicMicros(), 10), "STATUS=reloading the config")
}

func (n *notifier) stopping() {
	n.send(daemon.SdNotifyStopping, "STATUS=stopping: closing the open window and flushing to the authority")
}

// monotonicMicros is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with to match a RELOADING=1 to its reload.
func monotonicMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
