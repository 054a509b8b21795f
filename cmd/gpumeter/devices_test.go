package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevicesReadsASimulatedSource: with a config whose devices.source is
// simulated, `gpumeter devices` reads its scenario's GPUs (at --at) and
// applies the config's rules to the fake host root, rather than opening
// the node's NVML library.
func TestDevicesReadsASimulatedSource(t *testing.T) {
	sc, err := filepath.Abs("../../configs/scenarios/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`node: {id: n1, provider: p}
devices: {source: simulated, scenario: %q}
attribution:
  rules:
    - {user: acme, tenant: acme}
    - {cgroup: kubernetes, tenant: globex}
    - {cgroup_pattern: '/tenant-(?P<t>[a-z]+)\.slice/', tenant: '${t}'}
`, sc))
	units := func(at string) string {
		t.Helper()
		code, out, errOut := runCLI("devices", "--config", cfg, "--at", at)
		if code != exitOK {
			t.Fatalf("--at %s: exit %d: %s", at, code, errOut)
		}
		var v struct {
			Devices []struct{ UUID string } `json:"devices"`
			Units   []struct {
				UUID    string `json:"uuid"`
				Tenants []struct {
					Tenant string
					Weight int64
				} `json:"tenants"`
			} `json:"units"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("--at %s: %v\n%s", at, err, out)
		}
		var b strings.Builder
		for _, u := range v.Units {
			fmt.Fprintf(&b, "%s:", u.UUID[len(u.UUID)-1:])
			for _, s := range u.Tenants {
				fmt.Fprintf(&b, " %s=%d", s.Tenant, s.Weight)
			}
			b.WriteString(";")
		}
		return b.String()
	}
	// 0:00 globex alone on GPU 1; 0:50 acme on GPU 0, globex and initech
	// time-sliced 60:30 on GPU 1 (demo.yaml).
	if got, want := units("0s"), "0:;1: globex=1;"; got != want {
		t.Errorf("--at 0s: %s, want %s", got, want)
	}
	if got, want := units("50m"), "0: acme=1;1: globex=60 initech=30;"; got != want {
		t.Errorf("--at 50m: %s, want %s", got, want)
	}
	if code, _, errOut := runCLI("devices", "--config", cfg, "--at", "3h"); code != exitUsage || !strings.Contains(errOut, "beyond") {
		t.Errorf("--at beyond the scenario: exit %d %s, want %d", code, errOut, exitUsage)
	}
	if code, _, errOut := runCLI("devices", "--at", "1m"); code != exitUsage || !strings.Contains(errOut, "simulated") {
		t.Errorf("--at without a simulated config: exit %d %s, want %d", code, errOut, exitUsage)
	}
}
