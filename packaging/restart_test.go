package packaging

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exitCause is how a service's main process ended, in the terms of the
// table in systemd.service(5) under Restart=.
type exitCause struct {
	name     string
	code     int    // exit status, for an exit
	signal   string // signal name, for a kill by signal
	watchdog bool   // killed for a watchdog timeout
}

// restartsAfter decides, as systemd does, whether a service with these
// [Service] settings is restarted after cause: Restart= by the man page's
// table, then RestartPreventExitStatus= (exit statuses and signal names)
// vetoes it. SuccessExitStatus= makes a status clean.
func restartsAfter(t *testing.T, s map[string][]string, c exitCause) bool {
	t.Helper()
	fields := func(key string) []string {
		var out []string
		for _, v := range s[key] {
			if v == "" {
				out = nil // an empty assignment resets the list
				continue
			}
			out = append(out, strings.Fields(v)...)
		}
		return out
	}
	clean := false
	switch {
	case c.watchdog:
	case c.signal != "":
		// SIGHUP, SIGINT, SIGTERM and SIGPIPE are clean signals.
		clean = slices.Contains([]string{"SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE"}, c.signal) ||
			slices.Contains(fields("SuccessExitStatus"), c.signal)
	default:
		clean = c.code == 0 || slices.Contains(fields("SuccessExitStatus"), strconv.Itoa(c.code))
	}
	restart := "no"
	if r := s["Restart"]; len(r) > 0 {
		restart = r[len(r)-1]
	}
	var yes bool
	switch restart {
	case "always":
		yes = true
	case "on-success":
		yes = clean
	case "on-failure":
		yes = !clean
	case "on-abnormal":
		yes = c.watchdog || (c.signal != "" && !clean)
	case "on-abort":
		yes = c.signal != "" && !clean
	case "on-watchdog":
		yes = c.watchdog
	case "no":
	default:
		t.Fatalf("Restart=%s: not a value systemd knows", restart)
	}
	prevent := fields("RestartPreventExitStatus")
	if c.signal != "" && slices.Contains(prevent, c.signal) || c.signal == "" && !c.watchdog && slices.Contains(prevent, strconv.Itoa(c.code)) {
		yes = false
	}
	return yes
}

// TestAgentUnitRestartsWhatARestartCanFix: a crash (Go's panic exits 2,
// a runtime failure 1, a fatal signal, the watchdog's SIGABRT) is
// restarted; a usage (64) or configuration (78) error is not, and a crash
// loop ends in the failed state.
func TestAgentUnitRestartsWhatARestartCanFix(t *testing.T) {
	path := filepath.Join("systemd", "gpumeter.service")
	sections := sectionSettings(t, path)
	s := sections["Service"]
	for _, c := range []struct {
		exitCause
		want bool
	}{
		{exitCause{name: "runtime failure", code: 1}, true},
		{exitCause{name: "Go panic or fatal error", code: 2}, true},
		{exitCause{name: "killed by SIGKILL (OOM)", signal: "SIGKILL"}, true},
		{exitCause{name: "SIGSEGV", signal: "SIGSEGV"}, true},
		{exitCause{name: "SIGABRT", signal: "SIGABRT"}, true},
		{exitCause{name: "watchdog timeout", watchdog: true}, true},
		{exitCause{name: "usage error", code: 64}, false},
		{exitCause{name: "configuration error", code: 78}, false},
		{exitCause{name: "clean stop", code: 0}, false},
		{exitCause{name: "stopped by SIGTERM", signal: "SIGTERM"}, false},
	} {
		if got := restartsAfter(t, s, c.exitCause); got != c.want {
			t.Errorf("%s: restarted=%v, want %v (Restart=%q RestartPreventExitStatus=%q)",
				c.name, got, c.want, s["Restart"], s["RestartPreventExitStatus"])
		}
	}

	// A crash loop must end: the start limit, in [Unit] (systemd ignores
	// it in [Service] since v230), must be reachable at the restart pace.
	u := sections["Unit"]
	if len(u["StartLimitIntervalSec"]) != 1 || len(u["StartLimitBurst"]) != 1 {
		t.Fatalf("[Unit] StartLimitIntervalSec=%q StartLimitBurst=%q: want one of each", u["StartLimitIntervalSec"], u["StartLimitBurst"])
	}
	interval, err := time.ParseDuration(strings.ReplaceAll(u["StartLimitIntervalSec"][0], "min", "m"))
	if err != nil {
		t.Fatalf("StartLimitIntervalSec=%s: %v", u["StartLimitIntervalSec"][0], err)
	}
	burst, err := strconv.Atoi(u["StartLimitBurst"][0])
	if err != nil || burst < 1 {
		t.Fatalf("StartLimitBurst=%s: want a positive integer", u["StartLimitBurst"][0])
	}
	restartSec, err := time.ParseDuration(s["RestartSec"][0])
	if err != nil {
		t.Fatalf("RestartSec=%q: %v", s["RestartSec"], err)
	}
	if time.Duration(burst)*restartSec >= interval {
		t.Errorf("%d restarts %s apart never fit in StartLimitIntervalSec=%s: a crash loop would never stop", burst, restartSec, interval)
	}
	for _, k := range []string{"StartLimitIntervalSec", "StartLimitBurst"} {
		if len(s[k]) > 0 {
			t.Errorf("%s in [Service]: it belongs in [Unit]", k)
		}
	}
	// A failing ExecStartPre is restarted whatever its status:
	// RestartPreventExitStatus applies to the main process only.
	if len(s["ExecStartPre"]) > 0 {
		t.Errorf("ExecStartPre=%q: its config errors would be restarted; run makes the checks itself", s["ExecStartPre"])
	}
}
