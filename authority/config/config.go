// Package config reads the voucher authority's serve configuration: YAML,
// strict (unknown keys and wrong types are errors), defaults set before
// decoding so each lives in one place (Default), values validated after,
// and every error names the file and line.
//
// It must never replace a bad value with a default: the authority refuses
// to start instead.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is configs/authority.yaml.
type Config struct {
	Listen       string        `yaml:"listen"`
	TLS          TLS           `yaml:"tls"`
	Store        Store         `yaml:"store"`
	Admin        Admin         `yaml:"admin"`
	MaxBodyBytes int64         `yaml:"max_body_bytes"`
	ClockSkew    time.Duration `yaml:"clock_skew"`
	LogLevel     string        `yaml:"log_level"`
}

// TLS names certificate files; all empty serves plain HTTP.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Store selects the database.
type Store struct {
	Driver string `yaml:"driver"`
	Path   string `yaml:"path"`
}

// MaxBodyLimit is the largest max_body_bytes accepted (a batch of 10,000
// records is a few MiB).
const MaxBodyLimit = 256 << 20

// Default is the configuration before the file is applied.
func Default() Config {
	return Config{
		Listen:       ":8443",
		Store:        Store{Driver: "sqlite", Path: "/var/lib/voucher-authority/authority.db"},
		Admin:        defaultAdmin(),
		MaxBodyBytes: 8 << 20,
		ClockSkew:    5 * time.Minute,
		LogLevel:     "info",
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
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, yamlError(name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	for _, v := range cfg.validate() {
		return Config{}, fmt.Errorf("%s:%d: %s: %s", name, line(&root, v.path), strings.Join(v.path, "."), v.msg)
	}
	return cfg, nil
}

// yamlError rewrites yaml.v3's "line N: msg" errors as "name:N: msg".
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		var n int
		if _, serr := fmt.Sscanf(m, "line %d:", &n); serr == nil {
			msgs[i] = fmt.Sprintf("%s:%d:%s", name, n, strings.SplitN(m, ":", 2)[1])
		} else {
			msgs[i] = name + ": " + m
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

type invalid struct {
	path []string
	msg  string
}

func (c Config) validate() []invalid {
	var out []invalid
	bad := func(msg string, path ...string) { out = append(out, invalid{path, msg}) }
	if c.Listen == "" {
		bad("must not be empty (host:port)", "listen")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("cert_file and key_file must be given together", "tls", "cert_file")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		bad("client certificates need TLS: set cert_file and key_file", "tls", "client_ca_file")
	}
	if c.Store.Driver != "sqlite" {
		bad(fmt.Sprintf("%q is not supported (sqlite)", c.Store.Driver), "store", "driver")
	}
	if c.Store.Path == "" {
		bad("must not be empty", "store", "path")
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > MaxBodyLimit {
		bad(fmt.Sprintf("%d is out of range [1024, %d]", c.MaxBodyBytes, MaxBodyLimit), "max_body_bytes")
	}
	if c.ClockSkew <= 0 || c.ClockSkew > time.Hour {
		bad(fmt.Sprintf("%s is out of range (0, 1h]", c.ClockSkew), "clock_skew")
	}
	out = append(out, c.Admin.validate()...)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad(fmt.Sprintf("%q is not one of debug, info, warn, error", c.LogLevel), "log_level")
	}
	return out
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
