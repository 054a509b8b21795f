package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInstanceID(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	host := hostFacts{MachineID: "4f1c0e1e2d3c4b5a69788796a5b4c3d2", Hostname: "gpu-node-01"}
	load := func(t *testing.T, dir string, f hostFacts) (string, string) {
		t.Helper()
		var buf bytes.Buffer
		id, err := loadInstance(dir, f, now, slog.New(slog.NewTextHandler(&buf, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if !validInstance(id) {
			t.Fatalf("instance id %q is not 16 hex digits", id)
		}
		return id, buf.String()
	}

	t.Run("kept across starts on the same host", func(t *testing.T) {
		dir := t.TempDir()
		id, log := load(t, dir, host)
		if !strings.Contains(log, "made an instance id") {
			t.Errorf("first start not logged:\n%s", log)
		}
		fi, err := os.Stat(filepath.Join(dir, instanceFileName))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("instance file: %v, mode %v, want 0600", err, fi.Mode())
		}
		if again, log := load(t, dir, host); again != id || log != "" {
			t.Errorf("second start: %q (log %q), want %q and nothing logged", again, log, id)
		}
		// A fact unknown now (machine-id unreadable) does not count.
		if again, _ := load(t, dir, hostFacts{Hostname: host.Hostname}); again != id {
			t.Errorf("with machine-id unreadable: %q, want %q", again, id)
		}
	})
	for _, tc := range []struct {
		name    string
		facts   hostFacts
		changed string
	}{
		{"copied to a host with another machine-id", hostFacts{MachineID: "00000000000000000000000000000001", Hostname: host.Hostname}, "machine_id"},
		{"copied to a host with another name", hostFacts{MachineID: host.MachineID, Hostname: "gpu-node-02"}, "hostname"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			id, _ := load(t, dir, host)
			other, log := load(t, dir, tc.facts)
			if other == id {
				t.Fatalf("same instance id %s on another host", id)
			}
			if !strings.Contains(log, "this looks like a copied disk image") || !strings.Contains(log, "changed="+tc.changed) ||
				!strings.Contains(log, "previous_instance="+id) || !strings.Contains(log, "instance="+other) {
				t.Errorf("log does not say what changed:\n%s", log)
			}
			if again, _ := load(t, dir, tc.facts); again != other {
				t.Errorf("the new id was not kept: %q, then %q", other, again)
			}
		})
	}
	t.Run("an unreadable file is replaced, naming it", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, instanceFileName)
		if err := os.WriteFile(path, []byte(`{"id": "NOT-HEX"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		id, log := load(t, dir, host)
		if !strings.Contains(log, path) || !strings.Contains(log, "NOT-HEX") {
			t.Errorf("log does not name the file and its bad id:\n%s", log)
		}
		if again, _ := load(t, dir, host); again != id {
			t.Errorf("replacement not kept: %q, then %q", id, again)
		}
	})
}
