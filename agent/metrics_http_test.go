package agent

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestMetricsGzip scrapes a real server as Prometheus does (gzip) and as
// a client that takes no compression, and requires the same exposition.
func TestMetricsGzip(t *testing.T) {
	m := NewMetrics("gz-test")
	srv := httptest.NewServer(gzipFast(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{DisableCompression: true})))
	defer srv.Close()
	get := func(enc string) (http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", enc) // set by hand: the client then does not decode
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatalf("Accept-Encoding %q: body is not gzip: %v", enc, err)
			}
			r = zr
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header, string(body)
	}
	for range 3 { // the kept writer serves scrape after scrape
		h, gz := get("gzip")
		if ce := h.Get("Content-Encoding"); ce != "gzip" {
			t.Fatalf("Accept-Encoding gzip: Content-Encoding %q, want gzip", ce)
		}
		if !strings.Contains(gz, `gpumeter_build_info{`) || !strings.Contains(gz, "gpumeter_records_total{kind=\"usage\"} 0") {
			t.Fatalf("gzip scrape lacks the agent's metrics:\n%s", gz)
		}
	}
	h, plain := get("identity")
	if ce := h.Get("Content-Encoding"); ce != "" {
		t.Fatalf("Accept-Encoding identity: Content-Encoding %q, want none", ce)
	}
	_, gz := get("gzip;q=1.0, identity;q=0.5")
	// go_ and process_ figures move between scrapes; the agent's own do not here.
	keep := func(s string) string {
		var out []string
		for l := range strings.SplitSeq(s, "\n") {
			if strings.HasPrefix(l, "gpumeter_") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if keep(plain) == "" || keep(plain) != keep(gz) {
		t.Fatalf("plain and gzip scrapes differ:\n%s\n---\n%s", keep(plain), keep(gz))
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, c := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"identity"}, false},
		{[]string{"br, gzip;q=0.5"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0, identity"}, false},
		{[]string{"*"}, true},
		{[]string{"deflate", "gzip"}, true},
	} {
		if got := acceptsGzip(c.header); got != c.want {
			t.Errorf("Accept-Encoding %q: %v, want %v", c.header, got, c.want)
		}
	}
}
