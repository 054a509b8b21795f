package attribution

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestTemplatedTenantMustBeAName fills templates with values no record may
// carry as a tenant: those processes are unattributed, never attributed to
// the reserved name or refused later, and each (rule, value) is logged
// once however often it is seen.
func TestTemplatedTenantMustBeAName(t *testing.T) {
	h := newFakeHost(t, "root:x:0:0::/root:/bin/sh\nbob:x:2002:2002::/home/bob:/bin/sh\n")
	long := strings.Repeat("y", 129)
	h.proc(100, 10, 1000, "/tenants/acme/job-1.scope")
	h.proc(101, 10, 1000, "/tenants/unattributed/job-2.scope")
	h.proc(102, 10, 1000, "/tenants/UnAttributed/job-3.scope")
	h.proc(103, 10, 1000, "/tenants/a\u200bb/job-4.scope")
	h.proc(104, 10, 1000, "/tenants/"+long+"/job-5.scope")
	h.proc(105, 10, 2002, "/tenants/unattributed/job-6.scope") // bob: the next rule would match
	h.proc(106, 10, 1000, "/teams/unattributed/job-7.scope")   // prefixed: a valid name
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := mustConfig(t, `rules:
  - name: tenants
    cgroup_pattern: '^/tenants/(?P<t>[^/]+)/'
    tenant: ${t}
  - name: teams
    cgroup_pattern: '^/teams/(?P<t>[^/]+)/'
    tenant: team-${t}
  - user: bob
    tenant: bob
`)
	a, err := New(cfg, h.root, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot(
		wholeGPU("GPU-0", proc(100, -1)), wholeGPU("GPU-1", proc(101, -1)), wholeGPU("GPU-2", proc(102, -1)),
		wholeGPU("GPU-3", proc(103, -1)), wholeGPU("GPU-4", proc(104, -1)), wholeGPU("GPU-5", proc(105, -1)),
		wholeGPU("GPU-6", proc(106, -1)))
	want := `GPU-0: [acme cgroup:pattern w=1 pids=[100]]
GPU-1: [unattributed unattributed w=1 pids=[101]]
GPU-2: [unattributed unattributed w=1 pids=[102]]
GPU-3: [unattributed unattributed w=1 pids=[103]]
GPU-4: [unattributed unattributed w=1 pids=[104]]
GPU-5: [unattributed unattributed w=1 pids=[105]]
GPU-6: [team-unattributed cgroup:pattern w=1 pids=[106]]
`
	for call := 1; call <= 3; call++ {
		obs := a.Attribute(context.Background(), snap)
		if got := render(obs); got != want {
			t.Fatalf("call %d:\n got:\n%s\nwant:\n%s", call, got, want)
		}
		checkInvariants(t, snap, obs)
	}

	type logRec struct {
		Level, Msg string
		Rule       int    `json:"rule"`
		Tenant     string `json:"tenant"`
	}
	var recs []logRec
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var r logRec
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	// One warning per (rule, value): 101 and 105 share one.
	wantTenants := []string{"unattributed", "UnAttributed", "a\u200bb", long}
	if len(recs) != len(wantTenants) {
		t.Fatalf("%d warnings over three polls, want %d (one per rule and value): %s", len(recs), len(wantTenants), buf.String())
	}
	for i, r := range recs {
		if r.Level != "WARN" || r.Rule != 0 || r.Tenant != wantTenants[i] || !strings.Contains(r.Msg, "not a valid tenant name") {
			t.Errorf("warning %d = %+v, want a WARN for rule 0 and tenant %q", i, r, wantTenants[i])
		}
	}
}

// TestRefusedTenantLogBounded: the values remembered as logged are
// bounded; past the bound one line says so and nothing more is logged.
func TestRefusedTenantLogBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(Config{}, t.TempDir(), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	r := &compiledRule{index: 0, name: "r"}
	for i := range maxRefusedLogged + 10 {
		a.logRefused(context.Background(), r, strings.Repeat("\u200b", i+1), errReservedTenant)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != maxRefusedLogged+1 {
		t.Errorf("%d lines logged, want %d and one saying no more are", n, maxRefusedLogged+1)
	}
	if len(a.refused) != maxRefusedLogged {
		t.Errorf("%d values remembered, want the bound %d", len(a.refused), maxRefusedLogged)
	}
}
