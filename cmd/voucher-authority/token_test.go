package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenCommands(t *testing.T) {
	db := filepath.Join(t.TempDir(), "authority.db")
	output(t, "entity", "put", "--db", db, "--id", "acme", "--name", "Acme")
	secret := strings.TrimSpace(output(t, "token", "create", "--db", db, "--role", "entity", "--scope", "acme", "--label", "finance"))
	if !strings.HasPrefix(secret, "gmc_") || len(secret) != 4+64 {
		t.Fatalf("token create printed %q, want gmc_ and 64 hex digits", secret)
	}
	list := output(t, "token", "list", "--db", db)
	if !strings.Contains(list, "acme") || !strings.Contains(list, "finance") || strings.Contains(list, secret[4:20]) {
		t.Fatalf("token list:\n%s", list)
	}
	id := strings.Fields(strings.Split(list, "\n")[1])[0]
	runSteps(t, []step{
		{name: "unknown role", args: []string{"token", "create", "--db", db, "--role", "admin", "--scope", "acme"},
			code: exitUsage, wantStderr: `role: "admin" is not "provider" or "entity"`},
		{name: "unknown entity", args: []string{"token", "create", "--db", db, "--role", "entity", "--scope", "nobody"},
			code: exitFailure, wantStderr: `entity "nobody" does not exist`},
		{name: "scope required", args: []string{"token", "create", "--db", db, "--role", "provider"},
			code: exitUsage, wantStderr: `"scope" not set`},
		{name: "revoke", args: []string{"token", "revoke", "--db", db, "--id", id}, code: exitOK, wantOut: id + " revoked"},
		{name: "revoke unknown", args: []string{"token", "revoke", "--db", db, "--id", "ct-nope"},
			code: exitFailure, wantStderr: "no such console token"},
		{name: "listed revoked", args: []string{"token", "list", "--db", db, "--format", "json"}, code: exitOK, wantOut: `"revoked":"`},
	})
}
