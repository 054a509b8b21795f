package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
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
		{name: "unknown key names its line", yaml: "listen: 127.0.0.1:1\nstore:\n  driver: sqlite\n  paht: x\n", wantErr: "cfg.yaml:4: store.paht: unknown field (did you mean path?)"},
		{name: "wrong type", yaml: "max_body_bytes: lots\n", wantErr: `cfg.yaml:1: max_body_bytes: "lots" is not an integer`},
		{name: "bad duration", yaml: "clock_skew: soon\n", wantErr: "cfg.yaml:1: "},
		{name: "unsupported driver", yaml: "store:\n  driver: mysql\n", wantErr: "cfg.yaml:2: store.driver"},
		{name: "postgres", yaml: "store:\n  driver: postgres\n  dsn: postgres://va@db.internal:5432/authority?sslmode=verify-full\n", check: func(t *testing.T, c Config) {
			if c.Store.Driver != "postgres" || c.Store.Source() != "postgres://va@db.internal:5432/authority?sslmode=verify-full" {
				t.Errorf("got %+v, source %q", c.Store, c.Store.Source())
			}
		}},
		{name: "postgres without dsn", yaml: "listen: 127.0.0.1:1\nstore:\n  driver: postgres\n", wantErr: "cfg.yaml:2: store.dsn: must not be empty"},
		{name: "postgres dsn not a URL", yaml: "store:\n  driver: postgres\n  dsn: host=db user=va\n", wantErr: "cfg.yaml:3: store.dsn: must be a postgres:// URL"},
		{name: "postgres dsn with password", yaml: "store:\n  driver: postgres\n  dsn: postgres://va:hunter2@db/authority\n", wantErr: "cfg.yaml:3: store.dsn: must not hold the password"},
		{name: "postgres dsn with password parameter", yaml: "store:\n  driver: postgres\n  dsn: postgres://va@db/authority?password=hunter2\n", wantErr: "cfg.yaml:3: store.dsn: must not hold the password"},
		{name: "postgres dsn without database", yaml: "store:\n  driver: postgres\n  dsn: postgres://va@db\n", wantErr: "cfg.yaml:3: store.dsn: names no database"},
		{name: "dsn with sqlite", yaml: "store:\n  driver: sqlite\n  path: /a.db\n  dsn: postgres://va@db/authority\n", wantErr: "cfg.yaml:4: store.dsn: is for driver postgres"},
		{name: "password file with sqlite", yaml: "store:\n  password_file: /pw\n", wantErr: "cfg.yaml:2: store.password_file: is for driver postgres"},
		{name: "missing password file", yaml: "store:\n  driver: postgres\n  dsn: postgres://va@db/authority\n  password_file: /nonexistent/pw\n", wantErr: "cfg.yaml:4: store.password_file: "},
		{name: "cert without key", yaml: "tls:\n  cert_file: a.pem\n", wantErr: "cfg.yaml:2: tls.cert_file"},
		{name: "client CA without TLS", yaml: "listen: 127.0.0.1:1\ntls:\n  client_ca_file: ca.pem\n", wantErr: "cfg.yaml:3: tls.client_ca_file"},
		{name: "body limit too small", yaml: "\n\nmax_body_bytes: 10\n", wantErr: "cfg.yaml:3: max_body_bytes"},
		{name: "negative skew", yaml: "clock_skew: -1s\n", wantErr: "cfg.yaml:1: clock_skew"},
		{name: "bad log level", yaml: "log:\n  level: loud\n", wantErr: `cfg.yaml:2: log.level: "loud" is not one of`},
		{name: "bad log format", yaml: "log: {format: xml}\n", wantErr: `cfg.yaml:1: log.format: "xml" is not one of json, text`},
		{name: "log format text", yaml: "log: {level: debug, format: text}\n", check: func(t *testing.T, c Config) {
			if c.Log != (Log{Level: "debug", Format: "text"}) {
				t.Errorf("log %+v", c.Log)
			}
		}},
		{name: "old log_level key", yaml: "\nlog_level: info\n", wantErr: "cfg.yaml:2: log_level: renamed to log.level"},
		{name: "listen off loopback without TLS", yaml: "listen: 0.0.0.0:8443\n",
			wantErr: `cfg.yaml:1: listen: "0.0.0.0:8443" is not a loopback address: secure it with tls.cert_file and tls.key_file (TLS), or set allow_plaintext: true`},
		{name: "listen on every interface without TLS", yaml: "listen: :8443\n", wantErr: "is not a loopback address"},
		{name: "listen off loopback, plaintext allowed", yaml: "listen: :8443\nallow_plaintext: true\n", check: func(t *testing.T, c Config) {
			if c.Listen != ":8443" || !c.AllowPlaintext {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "listen off loopback with TLS", yaml: "listen: :8443\ntls: {cert_file: c.pem, key_file: k.pem}\n", check: func(t *testing.T, c Config) {
			if c.Listen != ":8443" || c.TLS.CertFile != "c.pem" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "listen on localhost", yaml: "listen: localhost:8443\n", check: func(t *testing.T, c Config) {}},
		{name: "listen without port", yaml: "listen: 127.0.0.1\n", wantErr: `cfg.yaml:1: listen: "127.0.0.1" is not host:port`},
		{name: "listen with a bad port", yaml: "listen: 127.0.0.1:99999\n", wantErr: "no valid port"},
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

// TestPasswordFile: the PostgreSQL password comes from a file that others
// cannot read, goes into Source and nowhere else: not in errors, not in
// the printed or logged config.
func TestPasswordFile(t *testing.T) {
	const pw = "hunter2 with spaces"
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr string
	}{
		{"0600", pw + "\n", 0o600, ""},
		{"0640, CRLF", pw + "\r\n", 0o640, ""},
		{"0400, no newline", pw, 0o400, ""},
		{"group may write", pw, 0o660, "has mode 0660"},
		{"others may read", pw, 0o604, "has mode 0604"},
		{"empty", "\n", 0o600, "is empty"},
		{"two lines", pw + "\nsecond\n", 0o600, "more than one line"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, fmt.Sprintf("pw%d", i))
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, tc.mode); err != nil {
				t.Fatal(err)
			}
			yml := "store:\n  driver: postgres\n  dsn: postgres://va@db:5432/authority?sslmode=require\n  password_file: " + file + "\n"
			c, err := Parse("cfg.yaml", []byte(yml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "cfg.yaml:4: store.password_file: ") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want cfg.yaml:4 ... %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Store.Password) != pw {
				t.Errorf("password %q, want %q", string(c.Store.Password), pw)
			}
			u, err := url.Parse(c.Store.Source())
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := u.User.Password(); got != pw || u.User.Username() != "va" || u.Host != "db:5432" || u.RawQuery != "sslmode=require" {
				t.Errorf("source %q: password %q", u.Redacted(), got)
			}
			var logged bytes.Buffer
			slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", slog.Any("store", c.Store), slog.Any("password", c.Store.Password))
			js, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			for what, text := range map[string]string{
				"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
				"slog": logged.String(), "json": string(js),
			} {
				if strings.Contains(text, "hunter2") {
					t.Errorf("%s shows the password: %s", what, text)
				}
			}
		})
	}
}
