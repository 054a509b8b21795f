package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/metering/signing"
)

// TestRejectionLogLine: one structured line per refusal, with node and
// cause, and no key material.
func TestRejectionLogLine(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		e := newEnvOn(t, driver, 0)
		var buf bytes.Buffer
		srv, err := server.New(server.Options{Ingester: e.Ingester, Store: e.Store, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		body := e.seal(e.sealer, 1, "", rec("GPU-0000000f-0000-4000-8000-00000000000f", 5, "t1", 60000)).Envelope
		rr := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/v1/batches", bytes.NewReader(body)))
		if rr.Code != http.StatusUnprocessableEntity {
			t.Fatalf("status %d", rr.Code)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 1 {
			t.Fatalf("%d log lines, want 1: %q", len(lines), buf.String())
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
			t.Fatal(err)
		}
		if line["node"] != node1 || line["cause"] != "gpu-not-registered" || line["level"] != "WARN" {
			t.Errorf("log line = %v", line)
		}
		if strings.Contains(lines[0], signing.EncodePublicKey(pub(e.key))) || strings.Contains(lines[0], "\"sig\"") {
			t.Errorf("log line carries key material: %s", lines[0])
		}
	})
}
