package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sectionSettings reads a unit file's key=value lines, per section
// ("Unit", "Service", ...), each key with its values in order.
func sectionSettings(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: %q is not key=value in a section", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// TestAuthorityUnitRestarts: the authority's unit restarts what a restart
// may cure (a runtime failure, a panic, a crash by signal) and not a
// usage or configuration error (internal/exitcode), checks the config
// before serve, and stops a crash loop.
func TestAuthorityUnitRestarts(t *testing.T) {
	s := sectionSettings(t, filepath.Join("systemd", "voucher-authority.service"))
	svc, unit := s["Service"], s["Unit"]
	for _, tc := range []struct {
		what   string
		exit   int
		signal string
		want   bool
	}{
		{"a runtime failure (exit 1)", 1, "", true},
		{"a panic (Go exits 2)", 2, "", true},
		{"a crash (SIGSEGV)", 0, "SIGSEGV", true},
		{"an abort (SIGABRT, GOTRACEBACK=crash)", 0, "SIGABRT", true},
		{"killed (SIGKILL, the OOM killer)", 0, "SIGKILL", true},
		{"a usage error (64)", 64, "", false},
		{"a configuration error (78)", 78, "", false},
		{"a clean stop (0)", 0, "", false},
		{"stopped by SIGTERM", 0, "SIGTERM", false},
	} {
		if got := restartsAfter(t, svc, exitCause{name: tc.what, code: tc.exit, signal: tc.signal}); got != tc.want {
			t.Errorf("%s: restarted %v, want %v (Restart=%q RestartPreventExitStatus=%q)", tc.what, got, tc.want,
				svc["Restart"], svc["RestartPreventExitStatus"])
		}
	}
	// A failing ExecStartPre is restarted whatever its status
	// (RestartPreventExitStatus applies to the main process only), so a
	// config error there would loop until the start limit: serve runs
	// check-config's checks itself and exits 78.
	if got := svc["ExecStartPre"]; len(got) > 0 {
		t.Errorf("ExecStartPre=%q: its config errors would be restarted; serve makes the checks itself", got)
	}
	// StartLimit* belong in [Unit]; in [Service] systemd ignores them.
	for _, k := range []string{"StartLimitIntervalSec", "StartLimitBurst"} {
		if len(unit[k]) != 1 || unit[k][0] == "" || unit[k][0] == "0" || unit[k][0] == "infinity" {
			t.Errorf("[Unit] %s=%q: want a limit, so a crash loop stops", k, unit[k])
		}
		if _, ok := svc[k]; ok {
			t.Errorf("%s in [Service]: systemd ignores it there", k)
		}
	}
}
