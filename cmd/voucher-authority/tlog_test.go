package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/authority/config"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
)

// TestLogKeygenAndCheckpoint: keygen writes a 0600 key once and prints the
// verifier key; once the log is started, log checkpoint prints a note
// that verifies with it.
func TestLogKeygenAndCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := filepath.Join(dir, "keys", "log.key")
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"log", "keygen", "--origin", "authority.example/log", key}, &out, &errb); code != exitOK {
		t.Fatalf("keygen: exit %d, %s", code, errb.String())
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	vkey, ok := strings.CutPrefix(strings.Split(out.String(), "\n")[1], "verifier_key: ")
	v, err := tlog.NewVerifier(vkey)
	if !ok || err != nil || v.Origin() != "authority.example/log" {
		t.Fatalf("keygen printed %q: %v", out.String(), err)
	}
	if code := run(ctx, []string{"log", "keygen", "--origin", "authority.example/log", key}, &bytes.Buffer{}, &bytes.Buffer{}); code != exitFailure {
		t.Errorf("keygen over an existing key: exit %d, want %d", code, exitFailure)
	}
	if code := run(ctx, []string{"log", "keygen", "--origin", "a b", filepath.Join(dir, "k2")}, &bytes.Buffer{}, &bytes.Buffer{}); code != exitUsage {
		t.Errorf("keygen with a bad origin: exit %d, want %d", code, exitUsage)
	}
	db := filepath.Join(dir, "a.db")
	if code := run(ctx, []string{"log", "checkpoint", "--db", db}, &bytes.Buffer{}, &errb); code != exitFailure ||
		!strings.Contains(errb.String(), store.ErrLogNotStarted.Error()) {
		t.Errorf("checkpoint before the log started: exit %d, %q", code, errb.String())
	}
	sg, err := loadLogSigner(config.VerifiableLog{KeyFile: key, Origin: "authority.example/log"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.DriverSQLite, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.StartLog(ctx, sg); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	out.Reset()
	if code := run(ctx, []string{"log", "checkpoint", "--db", db}, &out, &errb); code != exitOK {
		t.Fatalf("checkpoint: exit %d, %s", code, errb.String())
	}
	if cp, err := v.Open(out.Bytes()); err != nil || cp.Size != 0 {
		t.Errorf("checkpoint %q: %+v, %v", out.String(), cp, err)
	}
}
