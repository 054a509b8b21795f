package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/agent/config"
)

// preflightCase builds a config in a fresh directory; each refuses one
// thing run needs, and names the field.
type preflightCase struct {
	name  string
	setup func(t *testing.T, dir string) string // the config's extra YAML
	field string                                // named in the error
	fix   string                                // and the remedy, in the error
}

func preflightCases() []preflightCase {
	aFile := func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "not-a-dir")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return []preflightCase{
		{"missing key", func(t *testing.T, dir string) string {
			return fmt.Sprintf("authority: {url: 'http://127.0.0.1:1'}\nsigning: {key_file: %q}\n", filepath.Join(dir, "node.key"))
		}, "signing.key_file", "no such file (create it: gpumeter keygen "},
		{"key readable by others", func(t *testing.T, dir string) string {
			key := filepath.Join(dir, "node.key")
			if code, _, errOut := runCLI("keygen", key); code != 0 {
				t.Fatal(errOut)
			}
			if err := os.Chmod(key, 0o644); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("authority: {url: 'http://127.0.0.1:1'}\nsigning: {key_file: %q}\n", key)
		}, "signing.key_file", "mode 0644"},
		{"state dir under a file", func(t *testing.T, dir string) string {
			return fmt.Sprintf("state_dir: %q\n", filepath.Join(aFile(t, dir), "state"))
		}, "state_dir", "cannot be created"},
		{"state dir is a file", func(t *testing.T, dir string) string {
			return fmt.Sprintf("state_dir: %q\n", aFile(t, dir))
		}, "state_dir", "is not a directory"},
		{"spool dir is a file", func(t *testing.T, dir string) string {
			return fmt.Sprintf("spool: {path: %q}\n", filepath.Join(aFile(t, dir), "spool.db"))
		}, "spool.path", "not a directory"},
		{"records dir missing", func(t *testing.T, dir string) string {
			return fmt.Sprintf("output: {records_file: %q}\n", filepath.Join(dir, "missing", "records.jsonl"))
		}, "output.records_file", "does not exist"},
		{"web config TLS files missing", func(t *testing.T, dir string) string {
			web := filepath.Join(dir, "web.yml")
			body := fmt.Sprintf("tls_server_config:\n  cert_file: %q\n  key_file: %q\n", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
			if err := os.WriteFile(web, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("http: {web_config_file: %q}\n", web)
		}, "http.web_config_file", "tls.crt"},
		{"host root without proc", func(t *testing.T, dir string) string {
			return fmt.Sprintf("devices: {source: nvml}\nattribution: {host_root: %q}\n", dir)
		}, "attribution.host_root", "has no proc directory"},
		{"web config misspelt", func(t *testing.T, dir string) string {
			web := filepath.Join(dir, "web.yml")
			if err := os.WriteFile(web, []byte("tls_server_config:\n  cert_fil: x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("http: {web_config_file: %q}\n", web)
		}, "http.web_config_file", "tls_server_config.cert_fil: unknown field (did you mean cert_file?)"},
	}
}

// writeAgentConfig writes a simulated node's config with a fresh state
// directory, plus extra.
func writeAgentConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	scenario, err := filepath.Abs("../../configs/scenarios/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := "node: {id: n1, provider: p}\n"
	if !strings.Contains(extra, "devices:") {
		body += fmt.Sprintf("devices: {source: simulated, scenario: %q}\n", scenario)
	}
	if !strings.Contains(extra, "http:") {
		body += "http: {listen: '127.0.0.1:0'}\n"
	}
	if !strings.Contains(extra, "state_dir:") {
		body += fmt.Sprintf("state_dir: %q\n", filepath.Join(dir, "state"))
	}
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(body+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPreflightRefuses(t *testing.T) {
	for _, tc := range preflightCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeAgentConfig(t, dir, tc.setup(t, dir))
			for _, cmd := range [][]string{{"check-config", cfg}, {"run", "--config", cfg}} {
				code, out, errOut := runCLI(cmd...)
				if code != exitConfig {
					t.Fatalf("%s: exit %d, want %d (stdout %q, stderr %q)", cmd[0], code, exitConfig, out, errOut)
				}
				if !strings.Contains(errOut, tc.field+":") || !strings.Contains(errOut, tc.fix) {
					t.Errorf("%s: stderr %q does not name %s and say %q", cmd[0], errOut, tc.field, tc.fix)
				}
				// Nothing started, nothing created: run stopped before
				// the spool (and its state directory) or the listener.
				if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
					t.Errorf("%s: the state directory exists (%v): something started", cmd[0], err)
				}
				if strings.Contains(errOut, "level=") {
					t.Errorf("%s: the daemon logged before the preflight refused: %q", cmd[0], errOut)
				}
			}
		})
	}
}

// As root, access(2) allows every write, so a directory's mode cannot be
// the reason; this runs for an ordinary user.
func TestPreflightRefusesAReadOnlyStateDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write anywhere; the cases above cover the refusal")
	}
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	cfg := writeAgentConfig(t, dir, fmt.Sprintf("state_dir: %q\n", filepath.Join(ro, "state")))
	code, _, errOut := runCLI("check-config", cfg)
	if code != exitConfig || !strings.Contains(errOut, "state_dir:") || !strings.Contains(errOut, "not writable") {
		t.Fatalf("exit %d, stderr %q: want 78 naming state_dir, not writable", code, errOut)
	}
}

func TestCheckConfigLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	cfg := writeAgentConfig(t, dir, fmt.Sprintf("output: {records_file: %q}\n", filepath.Join(dir, "records.jsonl")))
	code, out, errOut := runCLI("check-config", cfg)
	if code != exitOK || !strings.HasSuffix(out, ": OK\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "agent.yaml" {
		t.Errorf("check-config left %v behind; want only agent.yaml", entries)
	}
	if !strings.Contains(errOut, "warning: "+cfg+": authority.url: not set") {
		t.Errorf("stderr %q lacks the no-authority warning", errOut)
	}
}

// The shipped example passes, with a warning for each placeholder left
// in it and one for the authority it does not name; nothing else.
func TestShippedConfigWarnings(t *testing.T) {
	const path = "../../configs/agent.yaml"
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Attribution.Rules); n != 0 {
		t.Errorf("the shipped config has %d attribution rules; its examples are to be commented out", n)
	}
	// The commented-out examples still load once uncommented as told.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	from, to := strings.Index(text, "  rules: []\n  # rules:\n"), strings.Index(text, "\nhttp:")
	if from < 0 || to < from {
		t.Fatal("the shipped config lacks the commented-out rules block after rules: []")
	}
	var block []string
	for _, l := range strings.Split(text[from+len("  rules: []\n"):to], "\n") {
		block = append(block, strings.Replace(l, "  # ", "  ", 1))
	}
	examples, err := config.Parse(path, []byte(text[:from]+strings.Join(block, "\n")+text[to:]))
	if err != nil {
		t.Fatalf("the example rules, uncommented: %v", err)
	}
	if n := len(examples.Attribution.Rules); n != 5 {
		t.Errorf("uncommented, the examples are %d rules, want 5", n)
	}
	examples.StateDir = t.TempDir()
	exWarnings, err := preflight(examples)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(exWarnings, "\n")
	for _, want := range []string{"attribution.rules[0].gpu: GPU-00000000-", `attribution.rules[4].user: "alice" is the shipped example's placeholder`} {
		if !strings.Contains(joined, want) {
			t.Errorf("uncommented examples: warnings lack %q:\n%s", want, joined)
		}
	}

	cfg.StateDir = t.TempDir() // /var/lib/gpumeter is the package's to create
	warnings, err := preflight(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, strings.SplitN(strings.TrimPrefix(w, path+":"), ": ", 3)[1])
	}
	slices.Sort(got)
	want := []string{"authority.url", "node.id", "node.provider"}
	if !slices.Equal(got, want) {
		t.Errorf("warnings on fields %v, want %v:\n%s", got, want, strings.Join(warnings, "\n"))
	}
}

func TestUsageErrorsExit64(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"check-config"},
		{"check-config", "a.yaml", "b.yaml"},
		{"run", "--no-such-flag"},
		{"run", "extra-arg"},
		{"simulate"},
		{"keygen"},
		{"devices", "--count", "0"},
	} {
		if code, _, errOut := runCLI(args...); code != 64 {
			t.Errorf("gpumeter %v: exit %d, want 64 (stderr %q)", args, code, errOut)
		}
	}
}
