// Package config loads and validates the agent's YAML configuration.
//
// Decoding is strict: unknown keys, wrong types and invalid values are all
// errors that name the file, the line and the field. A billing agent must
// refuse to start on a bad config rather than run on a guessed default, so
// nothing here ever replaces a bad value silently. Every default lives in
// Default(), and configs/agent.yaml documents each one.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/internal/tlog"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/kubelet"
	"github.com/gpumeter/gpumeter/internal/yamlerr"
)

// Config is the agent's whole configuration.
type Config struct {
	Node        Node        `yaml:"node"`
	Devices     Devices     `yaml:"devices"`
	Metering    Metering    `yaml:"metering"`
	Attribution Attribution `yaml:"attribution"`
	HTTP        HTTP        `yaml:"http"`
	Log         Log         `yaml:"log"`
	Output      Output      `yaml:"output"`
	Signing     Signing     `yaml:"signing"`
	Spool       Spool       `yaml:"spool"`
	Authority   Authority   `yaml:"authority"`
	StateDir    string      `yaml:"state_dir"`
	path        string      // the file it was loaded from, for messages
	root        *yaml.Node  // its YAML tree, for the lines of fields in messages
}

// Node identifies this machine to the voucher authority.
type Node struct {
	ID       string `yaml:"id"`
	Provider string `yaml:"provider"`
}

// Devices selects where GPU state comes from.
type Devices struct {
	// Source is "nvml" (the real driver) or "simulated" (a scenario file).
	Source   string `yaml:"source"`
	Scenario string `yaml:"scenario"`
	// Speed is simulated seconds per real second (simulated source only).
	Speed int `yaml:"speed"`
}

// Metering sets the sampling and windowing of the meter.
type Metering struct {
	PollInterval time.Duration `yaml:"poll_interval"`
	Window       time.Duration `yaml:"window"`
	MaxHold      time.Duration `yaml:"max_hold"`
}

// Attribution maps processes to tenants.
type Attribution struct {
	// HostRoot is where proc/ and etc/passwd are read: "/" on a node, a
	// different root when the agent runs in a container with the host's
	// /proc mounted elsewhere.
	HostRoot string             `yaml:"host_root"`
	Rules    []attribution.Rule `yaml:"rules"`
	// Kubelet is where namespace rules learn which pod holds which GPU.
	Kubelet Kubelet `yaml:"kubelet"`
}

// Kubelet is the kubelet's PodResources API (collectors/kubelet), asked
// only when a rule matches on namespace.
type Kubelet struct {
	// Socket is the kubelet's pod-resources unix socket.
	Socket string `yaml:"socket"`
	// Interval is how long a list of the pods stands before the next.
	Interval time.Duration `yaml:"interval"`
	// MaxStale is how long the last list stands in while the kubelet
	// cannot be reached (restart, upgrade); then process rules decide.
	MaxStale time.Duration `yaml:"max_stale"`
	// Timeout bounds one List call.
	Timeout time.Duration `yaml:"timeout"`
}

// HTTP is the metrics and health endpoint.
type HTTP struct {
	Listen string `yaml:"listen"`
	// WebConfigFile is a Prometheus web configuration file
	// (exporter-toolkit: tls_server_config, basic_auth_users, ...) that
	// secures the endpoint. A relative path is relative to this file's
	// directory. Empty: plain HTTP, no authentication.
	WebConfigFile string `yaml:"web_config_file"`
	// AllowPlaintext lets Listen be a non-loopback address without TLS.
	// Without it such an address needs a web config file that enables TLS:
	// /metrics names every tenant and its usage.
	AllowPlaintext bool `yaml:"allow_plaintext"`
}

// Log sets the daemon's logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Output is where closed records go until they are spooled and reported.
type Output struct {
	// RecordsFile, when set, receives every closed record as a JSON line.
	RecordsFile string `yaml:"records_file"`
}

// Signing is the node's Ed25519 key, which signs every batch.
type Signing struct {
	// KeyFile defaults to <state_dir>/node.key; it must be mode 0600.
	KeyFile string `yaml:"key_file"`
}

// Spool is the crash-safe store of records not yet acknowledged.
type Spool struct {
	// Path defaults to <state_dir>/spool.db.
	Path string `yaml:"path"`
	// MaxBytes caps the spool; past it, old unsent windows are merged
	// into coarser records (never dropped). 0 means no cap.
	MaxBytes int64 `yaml:"max_bytes"`
	// MergeWindow is the coarser window merged records use.
	MergeWindow time.Duration `yaml:"merge_window"`
	// RetainAcked is how long acknowledged batches are kept, byte for
	// byte, to send again to an authority restored from a backup (within
	// max_bytes: retained batches are the first dropped). 0: not kept.
	RetainAcked time.Duration `yaml:"retain_acked"`
}

// Authority is where batches are reported.
type Authority struct {
	// URL of the voucher authority; empty: meter and spool, report nothing.
	URL             string        `yaml:"url"`
	CAFile          string        `yaml:"ca_file"`
	CertFile        string        `yaml:"cert_file"`
	KeyFile         string        `yaml:"key_file"`
	Timeout         time.Duration `yaml:"timeout"`
	MaxBatchRecords int           `yaml:"max_batch_records"`
	// MaxClockOffset: past this difference between the authority's clock
	// and the node's, the agent logs a warning (metering/reporter,
	// DefaultMaxClockOffset says why 2s).
	MaxClockOffset time.Duration `yaml:"max_clock_offset"`
	// LogKey is the authority's log verifier key, as the authority prints
	// it (<name>+<hash>+<base64>). Empty: the key the authority serves is
	// trusted on first use and pinned in the spool (a warning at start and
	// in check-config).
	LogKey string `yaml:"log_key"`
}

// Default is the configuration every loaded file starts from.
func Default() Config {
	return Config{
		Devices:  Devices{Source: "nvml", Speed: 1},
		Metering: Metering{PollInterval: time.Second, Window: time.Minute},
		Attribution: Attribution{HostRoot: "/", Kubelet: Kubelet{Socket: kubelet.DefaultSocket,
			Interval: kubelet.DefaultInterval, MaxStale: kubelet.DefaultMaxStale, Timeout: kubelet.DefaultTimeout}},
		HTTP:      HTTP{Listen: "127.0.0.1:9410"},
		Log:       Log{Level: "info", Format: "text"},
		Spool:     Spool{MaxBytes: 1 << 30, MergeWindow: time.Hour, RetainAcked: 7 * 24 * time.Hour},
		Authority: Authority{Timeout: 10 * time.Second, MaxBatchRecords: 1000, MaxClockOffset: 2 * time.Second},
		StateDir:  "/var/lib/gpumeter",
	}
}

// KeyFile is the signing key's path, defaulted under the state directory.
func (c *Config) KeyFile() string {
	if c.Signing.KeyFile != "" {
		return c.Signing.KeyFile
	}
	return filepath.Join(c.StateDir, "node.key")
}

// SpoolPath is the spool's path, defaulted under the state directory.
func (c *Config) SpoolPath() string {
	if c.Spool.Path != "" {
		return c.Spool.Path
	}
	return filepath.Join(c.StateDir, "spool.db")
}

// AttributionConfig is the attribution stage's own config.
func (c *Config) AttributionConfig() attribution.Config {
	return attribution.Config{Rules: c.Attribution.Rules}
}

// Path is the file the config was loaded from.
func (c *Config) Path() string { return c.path }

// WebConfigPath is http.web_config_file resolved against the config
// file's directory; "" when none is set.
func (c *Config) WebConfigPath() string {
	p := c.HTTP.WebConfigFile
	if p == "" || filepath.IsAbs(p) || c.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// Where is "file:line" of a dotted field (or of its nearest parent in the
// file), for messages about a field checked after loading; just the file
// when the line is unknown.
func (c *Config) Where(field string) string {
	if c.root != nil {
		if line := lineOf(c.root, field); line > 0 {
			return fmt.Sprintf("%s:%d", c.path, line)
		}
	}
	return c.path
}

// ListenIsLoopback reports whether http.listen binds a loopback address
// only. An empty host (all interfaces) or a host name other than
// localhost is not loopback.
func (c *Config) ListenIsLoopback() bool {
	host, _, err := net.SplitHostPort(c.HTTP.Listen)
	return err == nil && isLoopback(host)
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data; path is only used in messages.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.path = path
	if err := yamlerr.Decode(path, data, &cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty config: node.id and node.provider are required", path)
		}
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, located(path, err)
	}
	if err := cfg.validate(func(field string) int { return lineOf(&root, field) }); err != nil {
		// One "path:LINE: field: message" line per error.
		var lines []string
		for _, l := range strings.Split(err.Error(), "\n") {
			lines = append(lines, path+":"+l)
		}
		return nil, errors.New(strings.Join(lines, "\n"))
	}
	cfg.root = &root
	if cfg.Metering.MaxHold == 0 {
		cfg.Metering.MaxHold = 3 * cfg.Metering.PollInterval
	}
	return &cfg, nil
}

var (
	nodeIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)
	lineRE        = regexp.MustCompile(`^line (\d+): `)
)

// fieldError is a validation error at a field; Error gives "LINE: field: msg".
type fieldError struct {
	line  int
	field string
	msg   string
}

func (e *fieldError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%d: %s: %s", e.line, e.field, e.msg)
	}
	return fmt.Sprintf(" %s: %s", e.field, e.msg) // "path:" goes in front
}

func (c *Config) validate(line func(string) int) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &fieldError{line: line(field), field: field, msg: fmt.Sprintf(format, a...)})
	}
	if c.Node.ID == "" {
		bad("node.id", "is required")
	} else if !nodeIDPattern.MatchString(c.Node.ID) {
		bad("node.id", "%q must be 1-63 letters, digits, '.', '_' or '-'", c.Node.ID)
	}
	if c.Node.Provider == "" {
		bad("node.provider", "is required")
	}
	switch c.Devices.Source {
	case "nvml":
		if c.Devices.Scenario != "" {
			bad("devices.scenario", "is only used with source: simulated")
		}
	case "simulated":
		if c.Devices.Scenario == "" {
			bad("devices.scenario", "is required with source: simulated")
		}
	default:
		bad("devices.source", "%q is not one of nvml, simulated", c.Devices.Source)
	}
	if c.Devices.Speed < 1 {
		bad("devices.speed", "%d must be at least 1", c.Devices.Speed)
	}
	m := c.Metering
	if m.PollInterval < 100*time.Millisecond || m.PollInterval%time.Millisecond != 0 {
		bad("metering.poll_interval", "%s must be a whole number of milliseconds, at least 100ms", m.PollInterval)
	}
	if m.Window < time.Second || (24*time.Hour)%m.Window != 0 {
		bad("metering.window", "%s must be at least 1s and divide 24h evenly (e.g. 30s, 1m, 5m, 15m, 1h)", m.Window)
	} else if m.PollInterval > 0 && m.Window%m.PollInterval != 0 {
		bad("metering.window", "%s must be a multiple of metering.poll_interval (%s) so windows close on a poll", m.Window, m.PollInterval)
	}
	if m.MaxHold != 0 && (m.MaxHold < m.PollInterval || m.MaxHold%time.Millisecond != 0) {
		bad("metering.max_hold", "%s must be whole milliseconds and at least metering.poll_interval (%s)", m.MaxHold, m.PollInterval)
	}
	if c.Attribution.HostRoot == "" {
		bad("attribution.host_root", "must not be empty (use / on a node)")
	}
	c.validateKubelet(bad)
	c.validateHTTP(bad)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	if c.Spool.MaxBytes < 0 {
		bad("spool.max_bytes", "%d must not be negative (0: no cap)", c.Spool.MaxBytes)
	}
	if c.Spool.MergeWindow < c.Metering.Window || (24*time.Hour)%c.Spool.MergeWindow != 0 {
		bad("spool.merge_window", "%s must be at least metering.window and divide 24h", c.Spool.MergeWindow)
	} else if c.Metering.Window > 0 && c.Spool.MergeWindow%c.Metering.Window != 0 {
		// A merged record must cover whole windows: the inventory reports
		// both, and the authority refuses a merge window that is not a
		// multiple of the window.
		bad("spool.merge_window", "%s must be a multiple of metering.window (%s)", c.Spool.MergeWindow, c.Metering.Window)
	}
	if c.Spool.RetainAcked < 0 {
		bad("spool.retain_acked", "%s must not be negative (0: acknowledged batches are not kept)", c.Spool.RetainAcked)
	}
	c.validateAuthority(bad)
	return errors.Join(errs...)
}

// validateHTTP refuses a non-loopback listen address unless the endpoint
// is secured by a web config file (which must then enable TLS: the agent
// checks the file's content at start and in check-config) or plain HTTP
// is explicitly allowed. Tenant names and usage are not for anyone who
// can reach the port.
func (c *Config) validateHTTP(bad func(field, format string, a ...any)) {
	h := c.HTTP
	if h.Listen == "" {
		bad("http.listen", "must not be empty")
		return
	}
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		bad("http.listen", "%q must be host:port", h.Listen)
		return
	}
	if !c.ListenIsLoopback() && h.WebConfigFile == "" && !h.AllowPlaintext {
		bad("http.listen", "%q is not a loopback address: secure it with http.web_config_file (TLS), or set http.allow_plaintext: true", h.Listen)
	}
}

// validateAuthority refuses plain HTTP to anything but loopback: usage
// records are what vouchers pay for, so they travel over TLS.
func (c *Config) validateAuthority(bad func(field, format string, a ...any)) {
	a := c.Authority
	if a.LogKey != "" {
		if _, err := tlog.NewVerifier(a.LogKey); err != nil {
			bad("authority.log_key", "%v (give the key exactly as the authority prints it)", err)
		}
	}
	if a.Timeout <= 0 {
		bad("authority.timeout", "%s must be positive", a.Timeout)
	}
	if a.MaxBatchRecords < 1 || a.MaxBatchRecords > 10000 {
		bad("authority.max_batch_records", "%d must be 1 to 10000", a.MaxBatchRecords)
	}
	if a.MaxClockOffset <= 0 || a.MaxClockOffset > time.Hour {
		bad("authority.max_clock_offset", "%s must be positive and at most 1h", a.MaxClockOffset)
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		bad("authority.cert_file", "cert_file and key_file go together (client certificate)")
	}
	if a.URL == "" {
		return
	}
	u, err := url.Parse(a.URL)
	if err != nil || u.Host == "" {
		bad("authority.url", "%q is not an absolute URL", a.URL)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			bad("authority.url", "%q: plain http is only allowed to a loopback address; use https", a.URL)
		}
		if a.CAFile != "" || a.CertFile != "" {
			bad("authority.url", "%q: ca_file and cert_file need an https URL", a.URL)
		}
	default:
		bad("authority.url", "%q: scheme must be https", a.URL)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// located turns yaml.v3's "line N: msg" errors into "path:N: msg".
func located(path string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = path + ":" + lineRE.ReplaceAllString(m, "$1: ")
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if lineRE.MatchString(msg) {
		return fmt.Errorf("%s:%s", path, lineRE.ReplaceAllString(msg, "$1: "))
	}
	return fmt.Errorf("%s: %s", path, msg)
}

// lineOf finds the line of a dotted field path in a YAML document, or the
// nearest existing parent's line, or 0 when the document lacks it entirely.
func lineOf(root *yaml.Node, field string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, key := range strings.Split(field, ".") {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// validateKubelet checks attribution.kubelet.
func (c *Config) validateKubelet(bad func(field, format string, args ...any)) {
	k := c.Attribution.Kubelet
	if k.Socket == "" {
		bad("attribution.kubelet.socket", "must not be empty (the kubelet's is %s)", kubelet.DefaultSocket)
	}
	if k.Interval < time.Second {
		bad("attribution.kubelet.interval", "%s must be at least 1s", k.Interval)
	}
	if k.MaxStale < 0 {
		bad("attribution.kubelet.max_stale", "%s must not be negative (0: drop the list at the first failure)", k.MaxStale)
	}
	if k.Timeout <= 0 || k.Timeout > k.Interval {
		bad("attribution.kubelet.timeout", "%s must be positive and at most attribution.kubelet.interval (%s): the poll waits for it", k.Timeout, k.Interval)
	}
}
