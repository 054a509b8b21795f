package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
)

// TestCheckConfig runs check-config on configurations that each break one
// thing: every failure exits 78 and names its field; warnings leave 0.
func TestCheckConfig(t *testing.T) {
	pki := authoritytest.NewPKI(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	writeFile(t, token, serveToken+"\n")
	openToken := filepath.Join(dir, "open.token")
	writeFile(t, openToken, serveToken+"\n")
	if err := os.Chmod(openToken, 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk")
	writeFile(t, junk, "not a certificate, not a database\n")
	// The shipped example's placeholder names, as files that exist.
	example := filepath.Join(dir, "example")
	if err := os.Mkdir(example, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(example, "cert.pem"), string(pki.Server.CertPEM))
	writeFile(t, filepath.Join(example, "key.pem"), string(pki.Server.KeyPEM))

	db := "store: {driver: sqlite, path: " + filepath.Join(dir, "a.db") + "}\n"
	logKey := filepath.Join(dir, "log.key")
	if code := run(context.Background(), []string{"log", "keygen", "--origin", "authority.example/log", logKey}, &bytes.Buffer{}, &bytes.Buffer{}); code != exitOK {
		t.Fatalf("log keygen: exit %d", code)
	}
	openLogKey := filepath.Join(dir, "open-log.key")
	writeFile(t, openLogKey, "not read\n")
	if err := os.Chmod(openLogKey, 0o644); err != nil {
		t.Fatal(err)
	}
	withLog := "verifiable_log: {key_file: " + logKey + ", origin: authority.example/log}\n"
	tlsOK := "tls: {cert_file: " + pki.Server.CertFile + ", key_file: " + pki.Server.KeyFile + ", client_ca_file: " + pki.CA.CertFile + "}\n"
	tests := []struct {
		name, yaml string
		code       int
		want       string // in stderr ("" for none)
	}{
		{"all good", "listen: ':0'\n" + db + tlsOK + "admin: {listen: '127.0.0.1:0', token_file: " + token + "}\n" + withLog, exitOK, ""},
		{"plain HTTP on loopback", "listen: 127.0.0.1:0\n" + db + withLog, exitOK, ""},
		{"no verifiable log", "listen: 127.0.0.1:0\n" + db, exitOK, "warning: verifiable_log: not set: the authority keeps no verifiable log"},
		{"log key readable by others", "listen: 127.0.0.1:0\n" + db + "verifiable_log: {key_file: " + openLogKey + ", origin: a/log}\n",
			exitConfig, "error: verifiable_log.key_file: key " + openLogKey + " has mode 0644"},
		{"log key without origin", "listen: 127.0.0.1:0\n" + db + "verifiable_log: {key_file: " + logKey + "}\n",
			exitConfig, "cfg.yaml:3: verifiable_log.origin: must be set with key_file"},
		{"log origin with a plus", "listen: 127.0.0.1:0\n" + db + "verifiable_log: {key_file: " + logKey + ", origin: 'a+b'}\n",
			exitConfig, "verifiable_log.origin: \"a+b\" must have no space"},
		{"missing TLS certificate", "listen: 127.0.0.1:0\n" + db + "tls: {cert_file: " + filepath.Join(dir, "none.pem") + ", key_file: " + pki.Server.KeyFile + "}\n",
			exitConfig, "error: tls.cert_file: open " + filepath.Join(dir, "none.pem")},
		{"missing TLS key", "listen: 127.0.0.1:0\n" + db + "tls: {cert_file: " + pki.Server.CertFile + ", key_file: " + filepath.Join(dir, "none.key") + "}\n",
			exitConfig, "error: tls.key_file: open "},
		{"key of another certificate", "listen: 127.0.0.1:0\n" + db + "tls: {cert_file: " + pki.Server.CertFile + ", key_file: " + pki.Client.KeyFile + "}\n",
			exitConfig, "error: tls.key_file: with tls.cert_file: "},
		{"client CA not PEM", "listen: 127.0.0.1:0\n" + db + "tls: {cert_file: " + pki.Server.CertFile + ", key_file: " + pki.Server.KeyFile + ", client_ca_file: " + junk + "}\n",
			exitConfig, "error: tls.client_ca_file: " + junk + " holds no PEM certificate"},
		{"token readable by others", "listen: 127.0.0.1:0\n" + db + "admin: {listen: '127.0.0.1:0', token_file: " + openToken + "}\n",
			exitConfig, "error: admin.token_file: admin token file " + openToken + " has mode 0644"},
		{"token missing", "listen: 127.0.0.1:0\n" + db + "admin: {listen: '127.0.0.1:0', token_file: " + filepath.Join(dir, "none.token") + "}\n",
			exitConfig, "error: admin.token_file: open admin token file"},
		{"listen without a port", "listen: 127.0.0.1\n" + db, exitConfig, `:1: listen: "127.0.0.1" is not host:port`},
		{"listen off loopback without TLS", "listen: 0.0.0.0:8443\n" + db, exitConfig, "cfg.yaml:1: listen: \"0.0.0.0:8443\" is not a loopback address: secure it with tls.cert_file and tls.key_file (TLS), or set allow_plaintext: true"},
		{"plain HTTP off loopback allowed", "listen: 0.0.0.0:8443\nallow_plaintext: true\n" + db, exitOK, "warning: allow_plaintext: listen 0.0.0.0:8443 serves plain HTTP off loopback"},
		{"the old log_level key", "listen: 127.0.0.1:0\n" + db + "log_level: info\n", exitConfig, "cfg.yaml:3: log_level: renamed to log.level"},
		{"store directory missing", "listen: 127.0.0.1:0\nstore: {path: " + filepath.Join(dir, "none", "a.db") + "}\n", exitConfig,
			"error: store.path: directory " + filepath.Join(dir, "none") + ": "},
		{"store file not a database", "listen: 127.0.0.1:0\nstore: {path: " + junk + "}\n", exitConfig, "error: store.path: " + junk + " does not open as a SQLite database"},
		{"PostgreSQL unreachable", "listen: 127.0.0.1:0\nstore: {driver: postgres, dsn: 'postgres://va@127.0.0.1:1/authority?connect_timeout=5'}\n", exitConfig,
			"error: store.dsn: cannot connect: "},
		{"placeholders left from the example", "listen: ':0'\n" + db + "tls: {cert_file: " + filepath.Join(example, "cert.pem") + ", key_file: " + filepath.Join(example, "key.pem") + "}\n",
			exitOK, "warning: tls.cert_file: \"" + filepath.Join(example, "cert.pem") + "\" is the shipped example's placeholder"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "cfg.yaml")
			writeFile(t, cfg, tc.yaml)
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check-config", "--config", cfg}, &out, &errb)
			if code != tc.code {
				t.Fatalf("case %d: exit %d, want %d; stdout %q stderr %q", i, code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("stderr %q, want %q", errb.String(), tc.want)
			}
			if code == exitOK && (!strings.Contains(out.String(), cfg+": OK") || strings.Contains(errb.String(), "error:")) {
				t.Errorf("stdout %q, stderr %q: want OK and no error", out.String(), errb.String())
			}
			if tc.want == "" && errb.Len() > 0 {
				t.Errorf("stderr %q, want nothing", errb.String())
			}
		})
	}
}

// TestServeRunsThePreflight: serve refuses what check-config refuses,
// with 78, before it listens.
func TestServeRunsThePreflight(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cfg.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\nstore: {path: "+filepath.Join(dir, "a.db")+"}\ntls: {cert_file: "+filepath.Join(dir, "none.pem")+", key_file: "+filepath.Join(dir, "none.key")+"}\n")
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--config", cfg}, &bytes.Buffer{}, &errb); code != exitConfig ||
		!strings.Contains(errb.String(), "error: tls.cert_file: ") || !strings.Contains(errb.String(), "error: tls.key_file: ") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !os.IsNotExist(err) {
		t.Errorf("serve created the database before refusing: %v", err)
	}
}

// TestCommandLine: usage errors exit 64, help and completion 0.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		name            string
		args            []string
		code            int
		wantOut, wantEr string
	}{
		{"help", []string{"--help"}, exitOK, "check-config", ""},
		{"help of a command", []string{"node", "register", "--help"}, exitOK, "--public-key", ""},
		{"help names the billing guide", []string{"--help"}, exitOK, "docs/billing.md", ""},
		{"an argument where none is taken", []string{"check-config", "extra"}, exitUsage, "", `unknown command "extra" for "voucher-authority check-config"`},
		{"unknown flag", []string{"models", "--colour"}, exitUsage, "", "unknown flag: --colour"},
		{"every missing flag, in order", []string{"voucher", "issue"}, exitUsage, "",
			`required flag(s) "db", "expires", "holder", "id", "issued", "program" not set`},
		{"a subcommand is required", []string{"node"}, exitUsage, "", "voucher-authority node: a subcommand is required"},
		{"version", []string{"version"}, exitOK, version, ""},
		{"bash completion", []string{"completion", "bash"}, exitOK, "bash completion V2 for voucher-authority", ""},
		{"zsh completion", []string{"completion", "zsh"}, exitOK, "#compdef voucher-authority", ""},
		{"fish completion", []string{"completion", "fish"}, exitOK, "complete -c voucher-authority", ""},
		{"completing a subcommand", []string{"__complete", "node", ""}, exitOK, "register", ""},
		{"completing --format", []string{"__complete", "node", "list", "--format", ""}, exitOK, "table\njson\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantEr) {
				t.Fatalf("exit %d (want %d); stdout %q (want %q); stderr %q (want %q)", code, tc.code, out.String(), tc.wantOut, errb.String(), tc.wantEr)
			}
		})
	}
}
