package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/agent/config"
)

const good = `node:
  id: node-1
  provider: acme-cloud
metering:
  poll_interval: 500ms
  window: 30s
attribution:
  rules:
    - name: k8s
      cgroup: kubernetes
      tenant: k8s-${pod_uid}
`

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGoodAppliesDefaults(t *testing.T) {
	cfg, err := config.Load(write(t, good))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Node.ID != "node-1" || cfg.Metering.Window != 30*time.Second {
		t.Errorf("decoded %+v", cfg)
	}
	if cfg.Metering.MaxHold != 1500*time.Millisecond {
		t.Errorf("max_hold default = %s, want 3 x poll_interval = 1.5s", cfg.Metering.MaxHold)
	}
	if cfg.Devices.Source != "nvml" || cfg.HTTP.Listen != "127.0.0.1:9410" || cfg.Attribution.HostRoot != "/" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if n := len(cfg.AttributionConfig().Rules); n != 1 {
		t.Errorf("rules = %d, want 1", n)
	}
}

func TestAuthorityURLs(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://authority.example:8443": true,
		"http://127.0.0.1:8080":          true,
		"http://[::1]:8080":              true,
		"http://localhost:8080":          true,
		"http://10.0.0.5:8080":           false,
		"authority.example":              false,
	} {
		_, err := config.Parse("a.yaml", []byte("node: {id: n, provider: p}\nauthority: {url: '"+url+"'}\n"))
		if (err == nil) != ok {
			t.Errorf("authority.url %s: err = %v, want ok=%v", url, err, ok)
		}
	}
}

func TestStatePathsDefaultUnderStateDir(t *testing.T) {
	cfg, err := config.Parse("a.yaml", []byte("node: {id: n, provider: p}\nstate_dir: /srv/gm\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeyFile() != "/srv/gm/node.key" || cfg.SpoolPath() != "/srv/gm/spool.db" {
		t.Errorf("key %s spool %s", cfg.KeyFile(), cfg.SpoolPath())
	}
}

func TestShippedConfigIsValid(t *testing.T) {
	if _, err := config.Load("../../configs/agent.yaml"); err != nil {
		t.Fatalf("configs/agent.yaml: %v", err)
	}
}

// configs/agent.yaml shows every option: each setting of Config is a key
// in it (with its comment and default).
func TestShippedConfigDocumentsEveryOption(t *testing.T) {
	b, err := os.ReadFile("../../configs/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(typ reflect.Type, n *yaml.Node, prefix string)
	walk = func(typ reflect.Type, n *yaml.Node, prefix string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" {
				continue
			}
			var val *yaml.Node
			for j := 0; n != nil && j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == name {
					val = n.Content[j+1]
				}
			}
			if val == nil {
				t.Errorf("configs/agent.yaml lacks %s%s", prefix, name)
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, val, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[config.Config](), doc.Content[0], "")
}

// Each bad config names the file, the line and the field.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string // substrings of the error after the file name
	}{
		{"unknown key", "node:\n  id: n\n  provider: p\n  colour: red\n", []string{":4: node.colour: unknown field"}},
		{"unknown top-level key", "node:\n  id: n\n  provider: p\nmeterng:\n  window: 1m\n", []string{":4: meterng: unknown field (did you mean metering?)"}},
		{"wrong type", "node:\n  id: n\n  provider: p\nmetering:\n  poll_interval: often\n", []string{":5:", "often"}},
		{"missing node id", "node:\n  provider: p\n", []string{":1: node.id: is required"}},
		{"bad node id", "node:\n  id: 'a b'\n  provider: p\n", []string{":2: node.id:", "a b"}},
		{"window not dividing a day", "node:\n  id: n\n  provider: p\nmetering:\n  window: 7s\n", []string{":5: metering.window:", "divide 24h"}},
		{"window not a poll multiple", "node:\n  id: n\n  provider: p\nmetering:\n  poll_interval: 700ms\n  window: 1m\n", []string{":6: metering.window:", "multiple"}},
		{"unknown source", "node:\n  id: n\n  provider: p\ndevices:\n  source: dcgm\n", []string{":5: devices.source:", "dcgm"}},
		{"simulated without scenario", "node:\n  id: n\n  provider: p\ndevices:\n  source: simulated\n", []string{":4: devices.scenario: is required"}},
		{"bad log level", "node:\n  id: n\n  provider: p\nlog:\n  level: loud\n", []string{":5: log.level:"}},
		{"bad regexp in a rule", "node:\n  id: n\n  provider: p\nattribution:\n  rules:\n    - name: r\n      cgroup_pattern: '(['\n      tenant: x\n", []string{":7", "cgroup_pattern"}},
		{"rule without matcher", "node:\n  id: n\n  provider: p\nattribution:\n  rules:\n    - name: r\n      tenant: x\n", []string{":6", "r"}},
		{"unknown key in a rule", "node:\n  id: n\n  provider: p\nattribution:\n  rules:\n    - name: r\n      user: bob\n      tennant: x\n", []string{":8", "tennant"}},
		{"plain http to a remote authority", "node:\n  id: n\n  provider: p\nauthority:\n  url: http://authority.example:8080\n", []string{":5: authority.url:", "loopback"}},
		{"authority scheme", "node:\n  id: n\n  provider: p\nauthority:\n  url: ftp://a.example\n", []string{":5: authority.url:", "https"}},
		{"client cert without key", "node:\n  id: n\n  provider: p\nauthority:\n  url: https://a.example\n  cert_file: /c.pem\n", []string{":6: authority.cert_file:"}},
		{"batch too large", "node:\n  id: n\n  provider: p\nauthority:\n  max_batch_records: 20000\n", []string{":5: authority.max_batch_records:"}},
		{"merge window", "node:\n  id: n\n  provider: p\nspool:\n  merge_window: 7m\n", []string{":5: spool.merge_window:"}},
		{"merge window not whole windows", "node:\n  id: n\n  provider: p\nmetering:\n  window: 45m\nspool:\n  merge_window: 1h\n", []string{":7: spool.merge_window:", "multiple of metering.window"}},
		{"remote listen without TLS", "node:\n  id: n\n  provider: p\nhttp:\n  listen: 0.0.0.0:9410\n", []string{":5: http.listen:", "loopback", "web_config_file", "allow_plaintext"}},
		{"all interfaces without TLS", "node:\n  id: n\n  provider: p\nhttp:\n  listen: ':9410'\n", []string{":5: http.listen:", "loopback"}},
		{"listen without port", "node:\n  id: n\n  provider: p\nhttp:\n  listen: localhost\n", []string{":5: http.listen:", "host:port"}},
		{"not yaml", "node: [\n", []string{":"}},
		{"empty", "", []string{"empty config"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.body)
			_, err := config.Load(p)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, p+":") {
				t.Errorf("error %q does not start with the file name %s", msg, p)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v, want it to name the file", err)
	}
}

func TestListenAddresses(t *testing.T) {
	for listen, ok := range map[string]bool{
		"127.0.0.1:9410": true,
		"[::1]:9410":     true,
		"localhost:9410": true,
		"0.0.0.0:9410":   false,
		":9410":          false,
		"10.0.0.5:9410":  false,
		"node-1:9410":    false,
	} {
		_, err := config.Parse("a.yaml", []byte("node: {id: n, provider: p}\nhttp: {listen: '"+listen+"'}\n"))
		if (err == nil) != ok {
			t.Errorf("http.listen %s without TLS: err = %v, want ok=%v", listen, err, ok)
		}
		// Secured or explicitly plain, any address is accepted here
		// (the web config file's TLS is checked when it is read).
		for _, extra := range []string{"web_config_file: web.yml", "allow_plaintext: true"} {
			cfg, err := config.Parse("a.yaml", []byte("node: {id: n, provider: p}\nhttp: {listen: '"+listen+"', "+extra+"}\n"))
			if err != nil {
				t.Errorf("http.listen %s with %s: %v", listen, extra, err)
			} else if cfg.ListenIsLoopback() != ok {
				t.Errorf("http.listen %s: ListenIsLoopback = %v", listen, cfg.ListenIsLoopback())
			}
		}
	}
}

func TestWebConfigPathIsRelativeToTheConfigFile(t *testing.T) {
	for file, want := range map[string]string{"web.yml": "/etc/gpumeter/web.yml", "/srv/web.yml": "/srv/web.yml", "": ""} {
		cfg, err := config.Parse("/etc/gpumeter/agent.yaml", []byte("node: {id: n, provider: p}\nhttp: {web_config_file: '"+file+"'}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.WebConfigPath(); got != want {
			t.Errorf("web_config_file %q: WebConfigPath = %q, want %q", file, got, want)
		}
	}
}

func TestWhereNamesTheLine(t *testing.T) {
	cfg, err := config.Parse("a.yaml", []byte("node: {id: n, provider: p}\n\nhttp:\n  listen: 127.0.0.1:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"http.listen": "a.yaml:4", "node.id": "a.yaml:1", "spool.path": "a.yaml"} {
		if got := cfg.Where(field); got != want {
			t.Errorf("Where(%s) = %q, want %q", field, got, want)
		}
	}
}

// Diff names every changed setting by its YAML path, with the values of
// scalars, and ignores what only moved in the file.
func TestDiff(t *testing.T) {
	base := "node: {id: n1, provider: p}\nmetering: {poll_interval: 1s}\nattribution:\n  rules:\n    - {name: a, user: alice, tenant: lab}\n"
	parse := func(body string) *config.Config {
		t.Helper()
		c, err := config.Parse("a.yaml", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := parse(base)
	if d := config.Diff(a, parse("# a comment\n\n"+base)); len(d) != 0 {
		t.Errorf("comments and moved lines: Diff = %v, want none", d)
	}
	b := parse(strings.NewReplacer("n1", "n2", "1s", "2s", "tenant: lab", "tenant: lab2").Replace(base) + "spool: {max_bytes: 0}\n")
	var got []string
	for _, c := range config.Diff(a, b) {
		got = append(got, c.String())
	}
	want := []string{
		`node.id ("n1" → "n2")`,
		"metering.poll_interval (1s → 2s)",
		"metering.max_hold (3s → 6s)",
		"attribution.rules",
		"spool.max_bytes (1073741824 → 0)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
