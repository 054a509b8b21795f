package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestMain lets the test binary run as gpumeter itself, so tests can
// start it as a real process and send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("GPUMETER_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		wantCode int
		want     string // in stdout for 0, stderr otherwise
	}{
		{"good", "node: {id: n1, provider: p}\n", 0, ": OK"},
		{"unknown key", "node: {id: n1, provider: p}\nmetering:\n  windw: 1m\n", 78, ":3: metering.windw: unknown field (did you mean window?)"},
		{"wrong type", "node: {id: n1, provider: p}\nmetering:\n  window: [1m]\n", 78, ":3:"},
		{"bad pattern", "node: {id: n1, provider: p}\nattribution:\n  rules:\n    - cgroup_pattern: '(?P<x'\n      tenant: t\n", 78, ":4:"},
		{"bad window", "node: {id: n1, provider: p}\nmetering:\n  window: 13s\n", 78, ":3: metering.window:"},
		{"remote listen in plain HTTP", "node: {id: n1, provider: p}\nhttp: {listen: '0.0.0.0:9410'}\n", 78, ":2: http.listen:"},
		{"web config missing", "node: {id: n1, provider: p}\nhttp:\n  web_config_file: /nonexistent/web.yml\n", 78, ":3: http.web_config_file: /nonexistent/web.yml"},
		{"scenario missing", "node: {id: n1, provider: p}\ndevices: {source: simulated, scenario: /nonexistent.yaml}\n", 78, "nonexistent.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "agent.yaml", tc.body)
			code, out, errOut := runCLI("check-config", p)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tc.wantCode, out, errOut)
			}
			got := out
			if code != 0 {
				got = errOut
				if !strings.Contains(got, p+":") {
					t.Errorf("stderr %q does not name the file %s", got, p)
				}
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output %q does not contain %q", got, tc.want)
			}
		})
	}
	if code, _, _ := runCLI("check-config", "../../configs/agent.yaml"); code != 0 {
		t.Errorf("shipped configs/agent.yaml: exit %d", code)
	}
	if code, _, errOut := runCLI("check-config", "../../configs/demo-agent.yaml"); code != 0 {
		t.Errorf("shipped configs/demo-agent.yaml: exit %d: %s", code, errOut)
	}
}

func TestRunRefusesBadConfigBeforeStarting(t *testing.T) {
	p := writeFile(t, "agent.yaml", "node: {id: n1}\nhttp: {listen: '127.0.0.1:0'}\n")
	code, _, errOut := runCLI("run", "--config", p)
	if code != exitConfig || !strings.Contains(errOut, "node.provider: is required") {
		t.Fatalf("exit %d, stderr %q: want exit 78 naming node.provider", code, errOut)
	}
}

func TestRunWithoutDriverFailsClearly(t *testing.T) {
	// This machine has no NVIDIA driver (CI never has one): the agent
	// must say so and exit non-zero, not crash.
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		t.Skip("an NVIDIA driver is present")
	}
	p := writeFile(t, "agent.yaml", fmt.Sprintf("node: {id: n1, provider: p}\nhttp: {listen: '127.0.0.1:0'}\nstate_dir: %q\n", t.TempDir()))
	code, _, errOut := runCLI("run", "--config", p)
	if code != exitFailure || !strings.Contains(errOut, "NVML") {
		t.Fatalf("exit %d, stderr %q: want exit 1 with an NVML error", code, errOut)
	}
}

func TestSimulateJSON(t *testing.T) {
	code, out, errOut := runCLI("simulate", "--scenario", "../../configs/scenarios/demo.yaml", "--duration", "10m", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// 10 one-minute windows x 2 GPUs, at least one record each.
	if len(lines) < 20 {
		t.Fatalf("%d records, want at least 20", len(lines))
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &raw); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"id", "node", "provider", "window_start", "window_end", "kind", "gpu_uuid",
		"parent_uuid", "model", "slice_num", "slice_den", "gpu_ms", "utilization_pct", "energy_mj"} {
		if _, ok := raw[field]; !ok {
			t.Errorf("record lacks field %q: %s", field, lines[0])
		}
	}
	if code, _, errOut := runCLI("simulate", "--scenario", "../../configs/scenarios/demo.yaml", "--format", "xml"); code != exitUsage {
		t.Errorf("--format xml: exit %d (%s), want 2", code, errOut)
	}
}

// TestSimulateInventory: the json output holds the node's inventory
// records (the start, the MIG reconfiguration at 0:30), and the summary
// leaves them out of its table and its record count.
func TestSimulateInventory(t *testing.T) {
	const sc = "../../configs/scenarios/mig-reconfigure.yaml"
	code, out, errOut := runCLI("simulate", "--scenario", sc, "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var inventories []protocol.Record
	for _, l := range lines {
		var r protocol.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == protocol.KindInventory {
			inventories = append(inventories, r)
		}
	}
	if len(inventories) != 2 || len(inventories[0].Inventory.GPUs[0].Instances) != 7 ||
		len(inventories[1].Inventory.GPUs[0].Instances) != 2 || inventories[1].Inventory.Agent != version {
		t.Fatalf("inventory records %+v, want the 7-instance layout then the 2-instance one, naming build %q", inventories, version)
	}
	code, out, errOut = runCLI("simulate", "--scenario", sc, "--format", "summary")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// MIG time counts by the instance's share of the GPU: acme's 5,550,000
	// instance-ms are 3,750,000 ms on 1/7 instances and 1,800,000 on a 3/7
	// one, 1,307,142 GPU-ms (1.541 instance-hours apart); globex's
	// 2,550,000 on 1/7 and 1,200,000 on 4/7, 1,050,000 GPU-ms.
	squeezed := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"acme 1307142 0.363 1.541", "globex 1050000 0.291 1.041",
		fmt.Sprintf(" %d records ", len(lines)-2), "MIG instance-hours count the instances' own time"} {
		if !strings.Contains(squeezed, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "inventory") {
		t.Errorf("summary shows inventory records:\n%s", out)
	}
}

// TestSIGTERMClosesTheOpenWindow runs the agent as a real process on a
// simulated node and stops it with SIGTERM: it must exit 0 having written
// the open window, cut at the stop instant, to its records file.
func TestSIGTERMClosesTheOpenWindow(t *testing.T) {
	scenario, _ := filepath.Abs("../../configs/scenarios/demo.yaml")
	out := filepath.Join(t.TempDir(), "records.jsonl")
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`node: {id: n1, provider: p}
devices: {source: simulated, scenario: %q, speed: 600}
http: {listen: "127.0.0.1:0"}
output: {records_file: %q}
log: {level: debug}
state_dir: %q
`, scenario, out, t.TempDir()))
	cmd := testutil.SelfCommand("GPUMETER_TEST_MAIN", "run", "--config", cfg)
	stderr := testutil.StartReadingStderr(t, cmd)
	// Wait (on the log, not on a sleep) until a window has closed.
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log []string
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("agent exited early:\n%s", strings.Join(log, "\n"))
			}
			log = append(log, l)
			if strings.Contains(l, "windows closed") {
				break wait
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no window closed in 30s:\n%s", strings.Join(log, "\n"))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		log = append(log, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v\n%s", err, strings.Join(log, "\n"))
	}
	if !strings.Contains(strings.Join(log, "\n"), "closed the open window") {
		t.Errorf("log does not say the open window was closed:\n%s", strings.Join(log, "\n"))
	}
	// exporter-toolkit's lines go through the daemon's handler too.
	if !strings.Contains(strings.Join(log, "\n"), `level=INFO msg="Listening on" address=127.0.0.1:`) {
		t.Errorf("exporter-toolkit's listening line is not in the daemon's log format:\n%s", strings.Join(log, "\n"))
	}
	// The log says why it stopped, in the daemon's own format.
	if !strings.Contains(strings.Join(log, "\n"), `level=INFO msg="signal received; stopping" signal=terminated`) {
		t.Errorf("log does not name the signal that stopped the agent:\n%s", strings.Join(log, "\n"))
	}
	recs := testutil.ReadRecords(t, out)
	if len(recs) == 0 {
		t.Fatal("no records written")
	}
	last := recs[len(recs)-1]
	if last.WindowEnd.UnixMilli()%60000 == 0 {
		t.Errorf("last record ends on a minute boundary (%s): the open window was not cut at the stop", last.WindowEnd)
	}
}

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "node.key")
	code, out, errOut := runCLI("keygen", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %o, want 600", st.Mode().Perm())
	}
	for _, want := range []string{"public_key: ", "key_id: ed25519:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	key, _ := os.ReadFile(path)
	if strings.Contains(out, string(key)) || strings.Contains(out, "PRIVATE") {
		t.Error("keygen printed the private key")
	}
	if code, _, errOut := runCLI("keygen", path); code == 0 || !strings.Contains(errOut, path) {
		t.Errorf("second keygen on the same file: exit %d, stderr %q; want a refusal naming the file", code, errOut)
	}
}

func TestRunRefusesAKeyOthersCanRead(t *testing.T) {
	state := t.TempDir()
	key := filepath.Join(state, "node.key")
	if code, _, errOut := runCLI("keygen", key); code != 0 {
		t.Fatal(errOut)
	}
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	scenario, _ := filepath.Abs("../../configs/scenarios/demo.yaml")
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`node: {id: n1, provider: p}
devices: {source: simulated, scenario: %q}
http: {listen: "127.0.0.1:0"}
authority: {url: "http://127.0.0.1:1"}
state_dir: %q
`, scenario, state))
	code, _, errOut := runCLI("run", "--config", cfg)
	if code != exitConfig || !strings.Contains(errOut, key) || !strings.Contains(errOut, "0640") {
		t.Fatalf("exit %d, stderr %q: want exit 78 naming %s and its mode 0640", code, errOut, key)
	}
}

// TestSIGHUPReloadsTheRunningAgent sends real SIGHUPs to a real `gpumeter
// run`, as systemd's ExecReload=/bin/kill -HUP $MAINPID does, with a
// notification socket standing in for systemd's: a changed rule is
// applied, a broken file is refused and the agent keeps running, and each
// reload is bracketed by RELOADING=1 (with MONOTONIC_USEC) and READY=1.
func TestSIGHUPReloadsTheRunningAgent(t *testing.T) {
	sock := testutil.ListenNotify(t, 0)
	// expect reads datagrams until one sets key=1 and returns it.
	expect := func(key string) map[string]string {
		t.Helper()
		return sock.Expect(t, key, 30*time.Second, testutil.NotifyEvents...)
	}

	scenario, _ := filepath.Abs("../../configs/scenarios/demo.yaml")
	body := fmt.Sprintf(`node: {id: n1, provider: p}
devices: {source: simulated, scenario: %q, speed: 600}
attribution:
  rules:
    - {user: acme, tenant: acme}
http: {listen: "127.0.0.1:0"}
state_dir: %q
`, scenario, t.TempDir())
	cfg := writeFile(t, "agent.yaml", body)
	p := startAgent(t, cfg)
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	expect("READY")

	if err := os.WriteFile(cfg, []byte(strings.Replace(body, "tenant: acme}", "tenant: acme-lab}", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if r := expect("RELOADING"); r["MONOTONIC_USEC"] == "" {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %v", r)
	}
	expect("READY")
	if l := p.waitFor(t, `msg="config reloaded" `, 30*time.Second); !strings.Contains(l, "attribution.rules") {
		t.Errorf("reload log %q does not name attribution.rules", l)
	}

	if err := os.WriteFile(cfg, []byte(body+"node: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect("RELOADING")
	expect("READY")
	if l := p.waitFor(t, "config reload refused", 30*time.Second); !strings.Contains(l, cfg+":") {
		t.Errorf("refusal %q does not name the file and line", l)
	}

	// Still running: it stops on SIGTERM as usual, closing its window.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING")
	p.waitFor(t, "closed the open window", 30*time.Second)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent after SIGTERM: %v", err)
	}
}
