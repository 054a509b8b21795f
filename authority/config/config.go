// Package config reads the voucher authority's serve configuration: YAML,
// strict (unknown keys and wrong types are errors), defaults set before
// decoding so each lives in one place (Default), values validated after,
// and every error names the file and line.
//
// It must never replace a bad value with a default: the authority refuses
// to start instead.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/internal/yamlerr"
	"gopkg.in/yaml.v3"
)

// Config is configs/authority.yaml.
type Config struct {
	Listen       string `yaml:"listen"`
	TLS          TLS    `yaml:"tls"`
	Store        Store  `yaml:"store"`
	Admin        Admin  `yaml:"admin"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	// Admission bounds concurrent ingests (admission.go).
	Admission Admission     `yaml:"admission"`
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxWindow and MaxMergeWindow bound the metering and merge windows a
	// node may declare in its inventory: no record is longer.
	MaxWindow      time.Duration `yaml:"max_window"`
	MaxMergeWindow time.Duration `yaml:"max_merge_window"`
	// AllowPlaintext lets Listen be a non-loopback address without TLS
	// (behind a TLS-terminating proxy on a trusted network): an explicit
	// choice, never the default.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	Log            Log  `yaml:"log"`
	// VerifiableLog is the verifiable log's key and origin (tlog.go).
	VerifiableLog VerifiableLog `yaml:"verifiable_log"`
	// OldLogLevel is the key log_level, renamed to log.level: kept in the
	// struct only to refuse it with the new name rather than "not found".
	OldLogLevel *string `yaml:"log_level"`
}

// Log sets serve's logging, as the agent's log section does.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json (the default: one JSON object a line) or text.
	Format string `yaml:"format"`
}

// TLS names certificate files; all empty serves plain HTTP.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Store selects the database: driver sqlite with path, or driver postgres
// with dsn (and the password in password_file).
type Store struct {
	Driver string `yaml:"driver"`
	// Path is the SQLite file (ignored for postgres).
	Path string `yaml:"path"`
	// DSN is the PostgreSQL database, a postgres:// URL without a password.
	DSN string `yaml:"dsn"`
	// PasswordFile holds the PostgreSQL password (one line), read by Parse.
	// It must not be writable by its group nor readable by others (0600,
	// 0640, 0400 or 0440): the password stays out of the config file, which
	// is world-readable and gets copied around.
	PasswordFile string `yaml:"password_file"`
	// Password is PasswordFile's content; never in YAML, never printed.
	Password Secret `yaml:"-"`
}

// The drivers store.driver accepts (store.DriverSQLite, store.DriverPostgres).
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Source is what store.Open takes for this section: the SQLite path, or
// the DSN with the password from password_file in it. It holds the
// password: pass it to store.Open, never print it.
func (s Store) Source() string {
	if s.Driver != DriverPostgres {
		return s.Path
	}
	if s.Password == "" {
		return s.DSN
	}
	u, err := url.Parse(s.DSN)
	if err != nil { // validated by Parse; an unvalidated Store gets its DSN as is
		return s.DSN
	}
	u.User = url.UserPassword(u.User.Username(), string(s.Password))
	return u.String()
}

// Secret is a value that fmt, slog and JSON show as [redacted].
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MaxBodyLimit is the largest max_body_bytes accepted (a batch of 10,000
// records is a few MiB).
const MaxBodyLimit = 256 << 20

// Default is the configuration before the file is applied.
func Default() Config {
	return Config{
		Listen:         "127.0.0.1:8443",
		Store:          Store{Driver: DriverSQLite, Path: "/var/lib/voucher-authority/authority.db"},
		Admin:          defaultAdmin(),
		MaxBodyBytes:   8 << 20,
		Admission:      Admission{MaxWait: 2 * time.Second, RetryAfter: time.Second},
		ClockSkew:      5 * time.Minute,
		MaxWindow:      time.Hour,
		MaxMergeWindow: 24 * time.Hour,
		Log:            Log{Level: "info", Format: "json"},
	}
}

// Load reads and validates the file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (named name in errors) over Default and validates it.
func Parse(name string, data []byte) (Config, error) {
	cfg := Default()
	if err := yamlerr.Decode(name, data, &cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	for _, v := range cfg.validate() {
		return Config{}, fmt.Errorf("%s:%d: %s: %s", name, line(&root, v.path), strings.Join(v.path, "."), v.msg)
	}
	if cfg.Store.PasswordFile != "" {
		pw, err := readPassword(cfg.Store.PasswordFile)
		if err != nil {
			return Config{}, fmt.Errorf("%s:%d: store.password_file: %w", name, line(&root, []string{"store", "password_file"}), err)
		}
		cfg.Store.Password = pw
	}
	return cfg, nil
}

// readPassword reads a password file: one line (a final newline is not
// part of it), not empty, and not open to others (see Store.PasswordFile).
// Errors never quote the content.
func readPassword(path string) (Secret, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o037 != 0 {
		return "", fmt.Errorf("%s has mode %04o: the group may not write it and others may not read it (chmod 0600 or 0640)", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	switch {
	case pw == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(pw, "\r\n"):
		return "", fmt.Errorf("%s has more than one line", path)
	}
	return Secret(pw), nil
}

type invalid struct {
	path []string
	msg  string
}

func (c Config) validate() []invalid {
	var out []invalid
	bad := func(msg string, path ...string) { out = append(out, invalid{path, msg}) }
	out = append(out, c.validateListen()...)
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("cert_file and key_file must be given together", "tls", "cert_file")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		bad("client certificates need TLS: set cert_file and key_file", "tls", "client_ca_file")
	}
	out = append(out, c.Store.validate()...)
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > MaxBodyLimit {
		bad(fmt.Sprintf("%d is out of range [1024, %d]", c.MaxBodyBytes, MaxBodyLimit), "max_body_bytes")
	}
	out = append(out, c.Admission.validate()...)
	if c.ClockSkew <= 0 || c.ClockSkew > time.Hour {
		bad(fmt.Sprintf("%s is out of range (0, 1h]", c.ClockSkew), "clock_skew")
	}
	day := 24 * time.Hour
	if c.MaxWindow < time.Second || c.MaxWindow > day || day%c.MaxWindow != 0 {
		bad(fmt.Sprintf("%s must divide 24h and be at least 1s", c.MaxWindow), "max_window")
	}
	if c.MaxMergeWindow < c.MaxWindow || c.MaxMergeWindow > day || day%c.MaxMergeWindow != 0 {
		bad(fmt.Sprintf("%s must divide 24h and be at least max_window", c.MaxMergeWindow), "max_merge_window")
	}
	out = append(out, c.Admin.validate(c.TLS)...)
	out = append(out, c.VerifiableLog.validate()...)
	if c.OldLogLevel != nil {
		bad("renamed to log.level (log: {level: info, format: json})", "log_level")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad(fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level), "log", "level")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad(fmt.Sprintf("%q is not one of json, text", c.Log.Format), "log", "format")
	}
	return out
}

// validateListen checks listen: host:port with a valid port, and a
// loopback address unless TLS secures it or allow_plaintext says plain
// HTTP off loopback is meant (node keys sign the records, but tenant names
// and usage are not for anyone on the path to read).
func (c Config) validateListen() []invalid {
	if c.Listen == "" {
		return []invalid{{[]string{"listen"}, "must not be empty (host:port)"}}
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return []invalid{{[]string{"listen"}, fmt.Sprintf("%q is not host:port", c.Listen)}}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return []invalid{{[]string{"listen"}, fmt.Sprintf("%q has no valid port (0-65535)", c.Listen)}}
	}
	if c.TLS.CertFile == "" && !c.AllowPlaintext && !IsLoopback(c.Listen) {
		return []invalid{{[]string{"listen"}, fmt.Sprintf("%q is not a loopback address: secure it with tls.cert_file and tls.key_file (TLS), or set allow_plaintext: true", c.Listen)}}
	}
	return nil
}

// validate checks the store section; paths start with "store".
func (s Store) validate() []invalid {
	var out []invalid
	bad := func(msg string, path ...string) { out = append(out, invalid{append([]string{"store"}, path...), msg}) }
	switch s.Driver {
	case DriverSQLite:
		if s.Path == "" {
			bad("must not be empty", "path")
		}
		if s.DSN != "" {
			bad("is for driver postgres; sqlite uses path", "dsn")
		}
		if s.PasswordFile != "" {
			bad("is for driver postgres", "password_file")
		}
	case DriverPostgres:
		if msg := checkDSN(s.DSN); msg != "" {
			bad(msg, "dsn")
		}
	default:
		bad(fmt.Sprintf("%q is not supported (sqlite or postgres)", s.Driver), "driver")
	}
	return out
}

// checkDSN says what is wrong with a PostgreSQL DSN in the config file;
// "" if nothing. Messages never quote a password.
func checkDSN(dsn string) string {
	if dsn == "" {
		return "must not be empty for driver postgres (postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full)"
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return "must be a postgres:// URL"
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "is not a valid URL"
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return "must not hold the password: put it in store.password_file"
	}
	if strings.TrimPrefix(u.Path, "/") == "" {
		return "names no database (postgres://USER@HOST:PORT/DATABASE)"
	}
	return ""
}

// line finds the line of the deepest key of path present in the document
// (the nearest enclosing key when the value was left at its default; 1
// when none is present).
func line(root *yaml.Node, path []string) int {
	n, at := root, 1
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return at
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				at, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		if next == nil {
			return at
		}
		n = next
	}
	return at
}
