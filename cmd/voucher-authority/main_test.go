package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
)

// dbArg is the --db value that reaches a's store: the SQLite file, or the
// DSN on PostgreSQL.
func dbArg(a *authoritytest.Authority, driver string) string {
	if driver == store.DriverPostgres {
		return a.DSN
	}
	return a.DBPath
}

// TestMain lets the test binary run as voucher-authority itself, so tests
// can start real serve processes (twoprocess_test.go).
func TestMain(m *testing.M) {
	if os.Getenv("VOUCHER_AUTHORITY_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestCommands runs the registry and query commands against one database
// of each kind --db names: a SQLite file and a postgres:// URL.
func TestCommands(t *testing.T) {
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "a.db")
			if driver == store.DriverPostgres {
				db = testenv.PostgresDSN(t)
			}
			testCommands(t, db)
		})
	}
}

func testCommands(t *testing.T, db string) {
	dir := t.TempDir()
	k1, k2, k3 := testutil.NewPublicKey(t), testutil.NewPublicKey(t), testutil.NewPublicKey(t)
	b64 := signing.EncodePublicKey
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("listen: 127.0.0.1:1\nstore:\n  driver: sqlite\n  path: x\nmax_body: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Steps run in order against one database.
	steps := []step{
		{"no command", nil, exitUsage, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", "unknown command"},
		{"register", []string{"node", "register", "--db", db, "--id", "n1", "--provider", "p", "--public-key", b64(k1), "--model", "H100-SXM5-80GB", "--gpu", "GPU-00000000-0000-4000-8000-000000000001", "--gpu", "GPU-00000000-0000-4000-8000-000000000002"},
			0, "registered node n1", ""},
		{"register claims another node's GPU", []string{"node", "register", "--db", db, "--id", "n2", "--provider", "p", "--public-key", b64(k2), "--model", "H100-SXM5-80GB", "--gpu", "GPU-00000000-0000-4000-8000-000000000003", "--gpu", "GPU-00000000-0000-4000-8000-000000000002"},
			1, "", "GPU GPU-00000000-0000-4000-8000-000000000002: GPU is registered to another node (node \"n1\")"},
		{"register without GPU", []string{"node", "register", "--db", db, "--id", "n2", "--provider", "p", "--public-key", b64(k2)}, exitUsage, "", `required flag(s) "gpu" not set`},
		{"register with bad key", []string{"node", "register", "--db", db, "--id", "n2", "--provider", "p", "--public-key", "abc", "--model", "H100-SXM5-80GB", "--gpu", "GPU-00000000-0000-4000-8000-000000000003"}, exitUsage, "", "--public-key"},
		{"rotate", []string{"key", "rotate", "--db", db, "--node", "n1", "--public-key", b64(k3)}, 0, signing.KeyID(k3), ""},
		{"rotate on unknown node", []string{"key", "rotate", "--db", db, "--node", "n9", "--public-key", b64(k2)}, 1, "", "node is not registered"},
		{"revoke", []string{"key", "revoke", "--db", db, "--key-id", signing.KeyID(k1)}, 0, "revoked key", ""},
		{"revoke again", []string{"key", "revoke", "--db", db, "--key-id", signing.KeyID(k1)}, 1, "", "already revoked"},
		{"head", []string{"head", "--db", db, "--node", "n1"}, 0, `"head": 0`, ""},
		{"head of unknown node", []string{"head", "--db", db, "--node", "n9"}, 1, "", "not registered"},
		{"node list", []string{"node", "list", "--db", db}, 0, "GPU-00000000-0000-4000-8000-000000000002 (H100-SXM5-80GB)", ""},
		{"node list in XML", []string{"node", "list", "--db", db, "--format", "xml"}, exitUsage, "", `node list: --format "xml": want table, json`},
		{"usage", []string{"usage", "--db", db, "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z"}, 0, `"total_gpu_ms": 0`, ""},
		{"usage without period", []string{"usage", "--db", db}, exitUsage, "", `required flag(s) "from", "to" not set`},
		{"usage with bad period", []string{"usage", "--db", db, "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, exitUsage, "", "not after"},
		{"serve with unknown config key", []string{"serve", "--config", badCfg}, exitConfig, "", "bad.yaml:5: max_body: unknown field"},
		{"serve without config file", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, exitConfig, "", "read config"},
	}
	runSteps(t, steps)
	var out bytes.Buffer
	if code := run(context.Background(), []string{"head", "--db", db, "--node", "n1"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatal(code)
	}
	var head struct {
		GPUs []struct {
			UUID, Model string
		} `json:"gpus"`
		Forked bool `json:"forked"`
	}
	if err := json.Unmarshal(out.Bytes(), &head); err != nil || len(head.GPUs) != 2 || head.Forked || head.GPUs[0].Model != "H100-SXM5-80GB" {
		t.Errorf("head = %+v, %v", head, err)
	}
	// node list: k1 was revoked, k3 added; no record yet.
	out.Reset()
	if code := run(context.Background(), []string{"node", "list", "--db", db, "--format", "json"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatal(code)
	}
	var nodes []nodeListJSON
	if err := json.Unmarshal(out.Bytes(), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != "n1" || nodes[0].Provider != "p" || len(nodes[0].GPUs) != 2 ||
		len(nodes[0].ActiveKeys) != 1 || nodes[0].ActiveKeys[0] != signing.KeyID(k3) || nodes[0].HeadSeq != 0 ||
		nodes[0].Flagged || nodes[0].LastWindowEnd != nil {
		t.Errorf("node list = %s", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"node", "list", "--db", db}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatal(code)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 ||
		!strings.Contains(lines[1], signing.KeyID(k3)) || strings.Contains(lines[1], signing.KeyID(k1)) {
		t.Errorf("node list table:\n%s", out.String())
	}
}

func TestDBSource(t *testing.T) {
	for _, tc := range []struct{ db, driver string }{
		{"/var/lib/voucher-authority/authority.db", store.DriverSQLite},
		{"authority.db", store.DriverSQLite},
		{"postgres://va@db/authority", store.DriverPostgres},
		{"PostgreSQL://va@db/authority", store.DriverPostgres},
	} {
		if d, src := dbSource(tc.db); d != tc.driver || src != tc.db {
			t.Errorf("dbSource(%q) = %q, %q; want %q", tc.db, d, src, tc.driver)
		}
	}
}

// TestDBPasswordNotShown: a PostgreSQL --db that fails to connect is
// reported without its password.
func TestDBPasswordNotShown(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"head", "--db", "postgres://va:hunter2@127.0.0.1:1/authority?connect_timeout=5", "--node", "n1"}, &out, &errb)
	if code != exitFailure || errb.Len() == 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if strings.Contains(errb.String(), "hunter2") || strings.Contains(out.String(), "hunter2") {
		t.Errorf("password shown: %q %q", out.String(), errb.String())
	}
}
