package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/internal/testutil"
)

const serveToken = "serve-test-token-0123456789abcdef0123456789"

// adminConfig writes a serve config with the operator API on admin
// (host:port) and the token in a file of mode tokenMode.
func adminConfig(t *testing.T, admin string, tokenMode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	writeFile(t, tokenFile, serveToken+"\n")
	if err := os.Chmod(tokenFile, tokenMode); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "authority.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\nstore: {driver: sqlite, path: "+filepath.Join(dir, "a.db")+"}\n"+
		"log: {level: info}\nadmin:\n  listen: \""+admin+"\"\n  token_file: "+tokenFile+"\n")
	return cfg
}

// TestServeStartsTheOperatorAPI runs serve with admin.listen set: the
// operator API answers on its own listener, with the token only, the
// token reads usage on the nodes' API (on loopback), and both stop with
// serve.
func TestServeStartsTheOperatorAPI(t *testing.T) {
	cfg := adminConfig(t, "127.0.0.1:0", 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, io.Discard, &logs) }()

	addr, nodesAddr := "", ""
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "operator API serving" {
				addr = l.Addr
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "voucher authority serving" {
				nodesAddr = l.Addr
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if addr == "" {
		t.Fatalf("no operator API in the log: %s", logs.String())
	}
	get := func(token string) int { return getWith(t, "http://"+addr+"/v1/admin/programs", token) }
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if code := get(serveToken); code != http.StatusOK {
		t.Errorf("with the token: %d", code)
	}
	if code := getWith(t, "http://"+addr+"/console/signin", ""); code != http.StatusOK {
		t.Errorf("the web console's sign-in page on the operator listener: %d", code)
	}
	usage := "http://" + nodesAddr + "/v1/usage?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"
	if code := getWith(t, usage, ""); code != http.StatusUnauthorized {
		t.Errorf("usage on the nodes' API without the token: %d", code)
	}
	if code := getWith(t, usage, serveToken); code != http.StatusOK {
		t.Errorf("usage on the nodes' API with the operators' token: %d", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d: %s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if strings.Contains(logs.String(), serveToken[:20]) {
		t.Error("the log holds the token")
	}
	if !strings.Contains(logs.String(), "bearer token") {
		t.Error("the refused request was not logged")
	}
}

// getWith GETs url with a bearer token ("" = none) and returns the status.
func getWith(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeRefusesAnUnsafeOperatorAPI(t *testing.T) {
	tests := []struct {
		name  string
		admin string
		mode  os.FileMode
		code  int
		want  string
	}{
		{"token readable by others", "127.0.0.1:0", 0o644, exitConfig, "error: admin.token_file: admin token file"},
		// Config errors: refused before anything listens, naming the line.
		{"plain HTTP off loopback", "0.0.0.0:0", 0o600, exitConfig, "authority.yaml:5: admin.listen"},
		{"plain HTTP on every interface", ":0", 0o600, exitConfig, "is not a loopback address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.SyncBuffer
			code := run(context.Background(), []string{"serve", "--config", adminConfig(t, tc.admin, tc.mode)}, io.Discard, &logs)
			if code != tc.code || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("exit %d, want %d with %q: %s", code, tc.code, tc.want, logs.String())
			}
		})
	}
}
