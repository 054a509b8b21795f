package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c != Default() {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "values override", yaml: "listen: 127.0.0.1:9000\nclock_skew: 2m\nstore:\n  path: /tmp/a.db\n", check: func(t *testing.T, c Config) {
			if c.Listen != "127.0.0.1:9000" || c.ClockSkew != 2*time.Minute || c.Store.Path != "/tmp/a.db" || c.Store.Driver != "sqlite" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "unknown key names its line", yaml: "listen: :1\nstore:\n  driver: sqlite\n  paht: x\n", wantErr: "cfg.yaml:4: field paht not found"},
		{name: "wrong type", yaml: "max_body_bytes: lots\n", wantErr: "cfg.yaml:1: cannot unmarshal"},
		{name: "bad duration", yaml: "clock_skew: soon\n", wantErr: "cfg.yaml:1: "},
		{name: "unsupported driver", yaml: "store:\n  driver: postgres\n", wantErr: "cfg.yaml:2: store.driver"},
		{name: "cert without key", yaml: "tls:\n  cert_file: a.pem\n", wantErr: "cfg.yaml:2: tls.cert_file"},
		{name: "client CA without TLS", yaml: "listen: :1\ntls:\n  client_ca_file: ca.pem\n", wantErr: "cfg.yaml:3: tls.client_ca_file"},
		{name: "body limit too small", yaml: "\n\nmax_body_bytes: 10\n", wantErr: "cfg.yaml:3: max_body_bytes"},
		{name: "negative skew", yaml: "clock_skew: -1s\n", wantErr: "cfg.yaml:1: clock_skew"},
		{name: "bad log level", yaml: "log_level: loud\n", wantErr: "log_level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("cfg.yaml", []byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestShippedConfig keeps configs/authority.yaml valid and equal to the
// defaults it documents.
func TestShippedConfig(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "authority.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c != Default() {
		t.Errorf("shipped config %+v differs from the defaults %+v", c, Default())
	}
}
