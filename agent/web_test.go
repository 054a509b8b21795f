package agent_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/authority/authoritytest"
)

// webConfig writes a Prometheus web config file next to the agent config
// and returns its name, relative to that directory.
func webConfig(t *testing.T, cfg *config.Config, body string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg.Path()), "web.yml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return "web.yml"
}

// withHTTP reloads cfg with its http section replaced.
func withHTTP(t *testing.T, cfg *config.Config, http string) *config.Config {
	t.Helper()
	rewrite(t, cfg.Path(), `http: {listen: "127.0.0.1:0"}`, "http: "+http)
	c, err := config.Load(cfg.Path())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestMetricsOverTLSWithBasicAuth serves /metrics with a web config file
// (TLS from a test CA, one bcrypt user) and reads it with a real HTTPS
// client: 401 without or with wrong credentials, 200 with them; a client
// that does not trust the CA, or speaks plain HTTP, gets no metrics.
func TestMetricsOverTLSWithBasicAuth(t *testing.T) {
	pki := authoritytest.NewPKI(t)
	cfg := simConfig(t, "")
	name := webConfig(t, cfg, fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
basic_auth_users:
  prometheus: %s
`, pki.Server.CertFile, pki.Server.KeyFile, hash(t, "scrape-secret")))
	cfg = withHTTP(t, cfg, `{listen: "127.0.0.1:0", web_config_file: `+name+`}`)
	r := startDaemon(t, cfg)
	defer r.stop(t)
	url := "https://" + r.d.Addr()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pki.Pool(), MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	fetch := func(path, user, password string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s over TLS: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	for _, c := range []struct{ name, user, password string }{
		{"no credentials", "", ""},
		{"wrong password", "prometheus", "guess"},
	} {
		if code, body := fetch("/metrics", c.user, c.password); code != http.StatusUnauthorized || strings.Contains(body, "gpumeter_") {
			t.Errorf("%s: /metrics = %d, want 401 and no metrics", c.name, code)
		}
	}
	code, body := fetch("/metrics", "prometheus", "scrape-secret")
	if code != http.StatusOK || !strings.Contains(body, "gpumeter_build_info") {
		t.Fatalf("with credentials: /metrics = %d, want 200 with the agent's metrics:\n%.300s", code, body)
	}
	poll(t, "/healthz over TLS", 20*time.Second, func() bool {
		code, _ := fetch("/healthz", "prometheus", "scrape-secret")
		return code == http.StatusOK
	})

	// A client without the CA does not get through the handshake.
	untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer untrusting.CloseIdleConnections()
	if resp, err := untrusting.Get(url + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without the test CA got %s", resp.Status)
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the test CA: %v, want a certificate error", err)
	}
	// Plain HTTP to the TLS port gets no metrics.
	if code, body := get(t, "http://"+r.d.Addr()+"/metrics"); code == http.StatusOK || strings.Contains(body, "gpumeter_") {
		t.Errorf("plain HTTP to the TLS port: %d", code)
	}
}

// TestListenRuleAndWebConfigChecks: a non-loopback http.listen needs TLS
// from the web config file, or http.allow_plaintext; the web config file is
// validated as the toolkit reads it, and errors name both files' lines.
func TestListenRuleAndWebConfigChecks(t *testing.T) {
	pki := authoritytest.NewPKI(t)
	tlsOnly := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", pki.Server.CertFile, pki.Server.KeyFile)
	authOnly := "basic_auth_users:\n  prometheus: " + hash(t, "x") + "\n"
	cases := []struct {
		name, http, web string
		want            string // "" when CheckFiles must accept it
	}{
		{"loopback, no web config", `{listen: "127.0.0.1:0"}`, "", ""},
		{"loopback, basic auth without TLS", `{listen: "127.0.0.1:0", web_config_file: web.yml}`, authOnly, ""},
		{"all interfaces over TLS", `{listen: ":9410", web_config_file: web.yml}`, tlsOnly + authOnly, ""},
		{"remote plain HTTP allowed explicitly", `{listen: "0.0.0.0:9410", allow_plaintext: true}`, "", ""},
		{"remote without TLS", `{listen: "0.0.0.0:9410", web_config_file: web.yml}`, authOnly, "no tls_server_config"},
		{"unknown key in the web config", `{listen: "127.0.0.1:0", web_config_file: web.yml}`, "tls_server_config:\n  cert_fil: x\n", "web.yml:2: "},
		{"key file missing", `{listen: "127.0.0.1:0", web_config_file: web.yml}`, fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: /nonexistent.key\n", pki.Server.CertFile), "nonexistent.key"},
		{"not a bcrypt hash", `{listen: "127.0.0.1:0", web_config_file: web.yml}`, "basic_auth_users:\n  prometheus: plaintext\n", "bcrypt"},
		{"web config file missing", `{listen: "127.0.0.1:0", web_config_file: nope.yml}`, "", "nope.yml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simConfig(t, "")
			if tc.web != "" {
				webConfig(t, cfg, tc.web)
			}
			cfg = withHTTP(t, cfg, tc.http)
			err := agent.CheckFiles(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckFiles: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckFiles accepted it, want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), cfg.Path()+":") || !strings.Contains(err.Error(), "http.web_config_file") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckFiles: %v\nwant the config file and line, http.web_config_file and %q", err, tc.want)
			}
		})
	}
}
