package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/internal/testenv"
)

// maxExposure is the highest `systemd-analyze security` exposure a unit
// may have (docs/operations.md quotes the scores).
const maxExposure = 2.5

// unit is one systemd unit shipped in packaging/systemd.
type unit struct {
	name   string // gpumeter.service
	binary string // the /usr/bin command its Exec lines run
}

var units = []unit{
	{name: "gpumeter.service", binary: "gpumeter"},
	{name: "voucher-authority.service", binary: "voucher-authority"},
}

// verifiableCopy writes the unit to a temporary directory with its
// /usr/bin/<binary> replaced by an executable stub there, since verify
// refuses a unit whose command does not exist, and returns its path.
func verifiableCopy(t *testing.T, u unit, extra string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("systemd", u.name))
	if err != nil {
		t.Fatal(err)
	}
	bin := "/usr/bin/" + u.binary
	if !strings.Contains(string(data), "ExecStart="+bin+" ") {
		t.Fatalf("%s: ExecStart does not run %s", u.name, bin)
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, u.binary)
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), bin, stub) + extra
	path := filepath.Join(dir, u.name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUnitsVerify runs systemd-analyze verify on each unit and requires an
// empty stderr: verify exits 0 on unknown keys and misspelled values and
// only warns.
func TestUnitsVerify(t *testing.T) {
	sa := testenv.Tool(t, "systemd-analyze")
	for _, u := range units {
		t.Run(u.name, func(t *testing.T) {
			stdout, stderr, err := run(t.Context(), "", nil, sa, "verify", verifiableCopy(t, u, ""))
			if err != nil || stderr != "" {
				t.Fatalf("systemd-analyze verify %s: %v\nstdout:\n%s\nstderr:\n%s", u.name, err, stdout, stderr)
			}
		})
	}
	// The check above can fail: a key systemd does not know is reported on
	// stderr with exit status 0.
	t.Run("unknown key is caught", func(t *testing.T) {
		_, stderr, _ := run(t.Context(), "", nil, sa, "verify", verifiableCopy(t, units[0], "ProtectEverything=yes\n"))
		if !strings.Contains(stderr, "ProtectEverything") {
			t.Fatalf("verify said nothing about an unknown key; stderr:\n%s", stderr)
		}
	})
}

var exposureRe = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+\.[0-9]+)`)

// exposure returns the unit's `systemd-analyze security --offline=true`
// exposure level.
func exposure(t *testing.T, sa, path string) string {
	t.Helper()
	stdout, stderr, err := run(t.Context(), "", nil, sa, "security", "--offline=true", "--no-pager", path)
	if err != nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s%s", path, err, stdout, stderr)
	}
	m := exposureRe.FindStringSubmatch(stdout + stderr)
	if m == nil {
		t.Fatalf("systemd-analyze security %s: no overall exposure level in:\n%s%s", path, stdout, stderr)
	}
	return m[1]
}

// TestUnitsSecurityExposure holds every unit at an exposure of 2.5 or
// lower, and the figure quoted for gpumeter.service in the unit's comment
// and in docs/operations.md to the one systemd-analyze gives.
func TestUnitsSecurityExposure(t *testing.T) {
	sa := testenv.Tool(t, "systemd-analyze")
	for _, u := range units {
		t.Run(u.name, func(t *testing.T) {
			path := filepath.Join("systemd", u.name)
			got := exposure(t, sa, path)
			level, err := strconv.ParseFloat(got, 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: exposure %s", u.name, got)
			if level > maxExposure {
				t.Errorf("%s: exposure %s, want <= %.1f", u.name, got, maxExposure)
			}
			quoted := regexp.MustCompile("`systemd-analyze security " + regexp.QuoteMeta(u.name) + "`[^0-9\n]*([0-9]+\\.[0-9]+)")
			for _, doc := range []string{path, "../docs/operations.md"} {
				data, err := os.ReadFile(doc)
				if err != nil {
					t.Fatal(err)
				}
				m := quoted.FindSubmatch(data)
				if m == nil {
					if u.name == "gpumeter.service" {
						t.Errorf("%s does not quote `systemd-analyze security %s`", doc, u.name)
					}
					continue
				}
				if string(m[1]) != got {
					t.Errorf("%s quotes exposure %s for %s; systemd-analyze says %s", doc, m[1], u.name, got)
				}
			}
		})
	}
}

// unitSettings parses a unit file's [Service] settings: key → values in
// order (a key may repeat).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not key=value", path, line)
			}
			settings[k] = append(settings[k], v)
		}
	}
	return settings
}

// TestAgentUnitKeepsWhatMeteringNeeds pins the agent unit's settings that
// metering depends on, so hardening cannot silently take them away:
// attribution reads every user's /proc/<pid>/{stat,status,cgroup} with real
// uids, NVML opens /dev/nvidia* and reads /proc/driver/nvidia, and the
// agent talks sd_notify with a watchdog.
func TestAgentUnitKeepsWhatMeteringNeeds(t *testing.T) {
	s := unitSettings(t, filepath.Join("systemd", "gpumeter.service"))
	want := map[string]string{
		"Type":               "notify",
		"NotifyAccess":       "main",
		"WatchdogSec":        "30s",
		"ExecStart":          "/usr/bin/gpumeter run --config /etc/gpumeter/agent.yaml",
		"User":               "gpumeter",
		"StateDirectory":     "gpumeter",
		"StateDirectoryMode": "0700",
		"Restart":            "on-failure",
		"DevicePolicy":       "closed",
		"DeviceAllow":        "char-nvidia* rw",
		"ProtectSystem":      "strict",
		"NoNewPrivileges":    "yes",
	}
	for k, v := range want {
		if got := s[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %s=%s", k, got, k, v)
		}
	}
	if got := s["ExecReload"]; len(got) == 0 || got[len(got)-1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%q: the last must be /bin/kill -HUP $MAINPID (systemd 252 has no Type=notify-reload)", got)
	}
	if got := s["CapabilityBoundingSet"]; len(got) != 1 || got[0] != "" {
		t.Errorf("CapabilityBoundingSet=%q, want empty", got)
	}
	// Each of these would make GPU time unattributed or the GPUs invisible.
	forbidden := map[string]string{
		"PrivateDevices": "yes",       // hides /dev/nvidia*
		"PrivateUsers":   "yes",       // other users' uids read as nobody
		"ProtectProc":    "invisible", // hides other users' processes
		"ProcSubset":     "pid",       // hides /proc/driver/nvidia
	}
	for k, bad := range forbidden {
		for _, v := range s[k] {
			if v == bad || (k == "ProtectProc" && v != "default") {
				t.Errorf("%s=%s would break metering", k, v)
			}
		}
	}
	for _, af := range []string{"AF_UNIX", "AF_INET", "AF_INET6"} {
		if len(s["RestrictAddressFamilies"]) != 1 || !strings.Contains(" "+s["RestrictAddressFamilies"][0]+" ", " "+af+" ") {
			t.Errorf("RestrictAddressFamilies=%q lacks %s", s["RestrictAddressFamilies"], af)
		}
	}
}
