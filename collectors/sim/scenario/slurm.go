package scenario

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// SlurmJob is what the simulated Slurm controller says about a job: the
// account it is billed to and the user who submitted it.
type SlurmJob struct {
	Account string `yaml:"account"`
	User    string `yaml:"user"`
}

var slurmName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// validateSlurmJobs checks slurm_jobs: positive job ids, and plain names
// for accounts and users.
func (s *Scenario) validateSlurmJobs() error {
	for _, id := range slices.Sorted(maps.Keys(s.SlurmJobs)) {
		key := "slurm_jobs." + strconv.Itoa(id)
		if id <= 0 {
			return s.fail([]string{key}, "slurm_jobs: job id %d must be positive", id)
		}
		j := s.SlurmJobs[id]
		for _, f := range []struct{ name, val string }{{"account", j.Account}, {"user", j.User}} {
			if !slurmName.MatchString(f.val) {
				return s.fail([]string{key + "." + f.name, key},
					"slurm_jobs.%d.%s: %q is not a Slurm name (letters, digits, '.', '_', '-')", id, f.name, f.val)
			}
		}
	}
	return nil
}

// squeuePath is where NewDriver writes the fake squeue, under the host root.
const squeuePath = "usr/bin/squeue"

// writeSqueue writes a squeue stand-in that answers
// `squeue --noheader --jobs=<id> --format=%A|%a|%u` from slurm_jobs, and
// fails for other jobs as squeue does. It returns its path, "" when the
// scenario has no slurm_jobs.
func writeSqueue(root string, s *Scenario) (string, error) {
	if len(s.SlurmJobs) == 0 {
		return "", nil
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# The simulated Slurm controller's jobs (gpumeter scenario).\n" +
		"for a in \"$@\"; do case \"$a\" in --jobs=*) id=\"${a#--jobs=}\";; esac; done\ncase \"$id\" in\n")
	for _, id := range slices.Sorted(maps.Keys(s.SlurmJobs)) {
		j := s.SlurmJobs[id]
		fmt.Fprintf(&b, "  %d) echo '%d|%s|%s' ;;\n", id, id, j.Account, j.User)
	}
	b.WriteString("  *) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;\nesac\n")
	path := filepath.Join(root, squeuePath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("write simulated squeue: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		return "", fmt.Errorf("write simulated squeue: %w", err)
	}
	return path, nil
}

// Squeue is the path of the simulated controller's squeue, for
// attribution.WithSqueue; "" when the scenario has no slurm_jobs.
func (d *Driver) Squeue() string { return d.squeue }
