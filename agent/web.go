package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/internal/yamlerr"
)

// serve runs the HTTP endpoint on the daemon's listener through
// prometheus/exporter-toolkit, which applies http.web_config_file: TLS
// (re-read for every new connection, so renewed certificates need no
// reload), basic auth with bcrypt hashes (re-read for every request), and
// the file's other settings. Without a file it is plain HTTP.
func (d *Daemon) serve(srv *http.Server) error {
	path := d.config().WebConfigPath() // a reload never changes it
	return web.Serve(d.listener, srv, &web.FlagConfig{WebConfigFile: &path}, d.log)
}

// checkWebConfig validates http.web_config_file as exporter-toolkit will
// read it (web.Validate: the YAML, the bcrypt hashes, the certificate and
// key) and enforces the listen rule: a non-loopback address is served over
// TLS unless http.allow_plaintext says otherwise (config.Load has already
// refused one with no web config file at all). New and CheckFiles run it;
// with log, it warns about a non-loopback endpoint that anyone can read.
func checkWebConfig(cfg *config.Config, log *slog.Logger) error {
	path := cfg.WebConfigPath()
	if path == "" {
		if log != nil && !cfg.ListenIsLoopback() {
			log.Warn("http.allow_plaintext: /metrics is served in plain HTTP without authentication on a non-loopback address",
				"listen", cfg.HTTP.Listen)
		}
		return nil
	}
	where := cfg.Where("http.web_config_file")
	// Decoded strictly here first, so that a misspelt or mistyped key reads
	// as every other config error; web.Validate then checks what only the
	// toolkit knows (the certificate and key, the bcrypt hashes).
	var wc web.Config
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: http.web_config_file: %s: %w", where, path, err)
	}
	if err := yamlerr.Decode(path, b, &wc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: http.web_config_file:\n%w", where, err)
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("%s: http.web_config_file: %s", where, locateWebErr(path, err))
	}
	tls := wc.TLSConfig.IsEnabled()
	if !tls && !cfg.ListenIsLoopback() && !cfg.HTTP.AllowPlaintext {
		return fmt.Errorf("%s: http.web_config_file: %s has no tls_server_config, and http.listen %q is not a loopback address: enable TLS (or set http.allow_plaintext: true)",
			where, path, cfg.HTTP.Listen)
	}
	if log != nil && !cfg.ListenIsLoopback() {
		authed := len(wc.Users) > 0 || wc.TLSConfig.ClientAuth == "RequireAndVerifyClientCert"
		switch {
		case !tls:
			log.Warn("http.allow_plaintext: /metrics is served in plain HTTP on a non-loopback address; basic auth passwords, if any, travel in clear",
				"listen", cfg.HTTP.Listen)
		case !authed:
			log.Warn("/metrics is served over TLS without authentication on a non-loopback address: anyone who reaches it reads tenants and usage",
				"listen", cfg.HTTP.Listen, "web_config_file", path)
		}
	}
	return nil
}

var webLineRE = regexp.MustCompile(`(?m)^\s*line (\d+): `)

// locateWebErr turns the YAML errors of the toolkit ("yaml: line N: ...",
// "yaml: unmarshal errors:\n  line N: ...") into "path:N: ..." lines, as
// config errors read.
func locateWebErr(path string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	if !webLineRE.MatchString(msg) {
		return path + ": " + msg
	}
	return webLineRE.ReplaceAllString(msg, path+":$1: ")
}
