package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The instance id names this copy of the agent (protocol.Batch.Instance):
// random, made at first start and kept in the state directory, next to the
// node key, with the host facts it was made on. A copy of the state
// directory on another host (a cloned VM image, a restored disk) finds
// facts that are not its own and makes a new id, so that the authority's
// second-signer refusal and the agent's logs tell the two copies apart.
// The id is a label, not a credential: the key is. A renamed host gets a
// new id too, which costs nothing.

// instanceFileName is the instance id's file in the state directory.
const instanceFileName = "instance.json"

// machineIDPath is read for the host's machine id (systemd's; regenerated
// by cloud-init and systemd-firstboot for a new machine).
var machineIDPath = "/etc/machine-id"

// hostFacts are what an instance id is tied to; "" is a fact not known.
type hostFacts struct {
	MachineID string `json:"machine_id,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
}

// instanceFile is the stored form.
type instanceFile struct {
	ID string `json:"id"`
	hostFacts
	Created time.Time `json:"created"`
}

// currentHostFacts reads this host's facts; an unreadable one stays "".
func currentHostFacts() hostFacts {
	var f hostFacts
	if b, err := os.ReadFile(machineIDPath); err == nil {
		f.MachineID = strings.TrimSpace(string(b))
	}
	if h, err := os.Hostname(); err == nil {
		f.Hostname = h
	}
	return f
}

// differ lists the facts that differ; a fact unknown on either side does
// not count.
func (f hostFacts) differ(g hostFacts) []string {
	var out []string
	if f.MachineID != "" && g.MachineID != "" && f.MachineID != g.MachineID {
		out = append(out, "machine_id")
	}
	if f.Hostname != "" && g.Hostname != "" && f.Hostname != g.Hostname {
		out = append(out, "hostname")
	}
	return out
}

// loadInstance returns the instance id kept in dir, making (and storing) a
// new one at first start, when the stored facts are not this host's, or
// when the file cannot be read as one (it is replaced, and the reason
// logged with the file's name).
func loadInstance(dir string, facts hostFacts, now time.Time, log *slog.Logger) (string, error) {
	path := filepath.Join(dir, instanceFileName)
	b, err := os.ReadFile(path)
	var stored instanceFile
	switch {
	case errors.Is(err, fs.ErrNotExist):
		id, err := newInstance(path, facts, now)
		if err == nil {
			log.Info("first start in this state directory: made an instance id", "instance", id, "file", path)
		}
		return id, err
	case err != nil:
		return "", fmt.Errorf("read instance id: %w", err)
	}
	if err := json.Unmarshal(b, &stored); err != nil || !validInstance(stored.ID) {
		if err == nil {
			err = fmt.Errorf("id %q is not 16 lower-case hex digits", stored.ID)
		}
		id, werr := newInstance(path, facts, now)
		if werr == nil {
			log.Warn("instance id file unreadable; made a new instance id", "file", path, "err", err, "instance", id)
		}
		return id, werr
	}
	if d := stored.differ(facts); len(d) > 0 {
		id, err := newInstance(path, facts, now)
		if err == nil {
			log.Warn("this looks like a copied disk image: the state directory was made on another host; made a new instance id",
				"file", path, "changed", strings.Join(d, ","), "previous_instance", stored.ID, "instance", id)
		}
		return id, err
	}
	if stored.MachineID == "" && facts.MachineID != "" || stored.Hostname == "" && facts.Hostname != "" {
		// A fact learned since (machine-id readable now): keep the id, store the fact.
		if err := writeInstance(path, instanceFile{ID: stored.ID, hostFacts: facts, Created: stored.Created}); err != nil {
			return "", err
		}
	}
	return stored.ID, nil
}

func validInstance(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

func newInstance(path string, facts hostFacts, now time.Time) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make instance id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	return id, writeInstance(path, instanceFile{ID: id, hostFacts: facts, Created: now.UTC().Truncate(time.Second)})
}

// writeInstance replaces the file atomically (a temporary file, fsynced,
// renamed), owner-only like everything in the state directory.
func writeInstance(path string, f instanceFile) error {
	if err := writeFileAtomic(path, f); err != nil {
		return fmt.Errorf("write instance id %s: %w", path, err)
	}
	return nil
}

func writeFileAtomic(path string, f instanceFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), instanceFileName+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
