package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/metering/signing"
)

// Placeholders the shipped configs/agent.yaml carries (its example rules
// commented out): left in a node's config, they would bill under another
// node's name, or a tenant for a GPU or user that is not theirs.
var placeholders = map[string]string{
	"node.id":       "gpu-node-01",
	"node.provider": "example-cloud",
}

const (
	placeholderGPU  = "GPU-00000000-0000-0000-0000-000000000000"
	placeholderUser = "alice"
)

// preflight is every check of a loaded config that "run" makes before it
// starts anything and that needs no GPU: the files the config names
// (scenario, web config and its TLS files, the signing key and its mode,
// the authority's TLS files) and the directories the agent writes (state,
// spool, records file). check-config runs the same function, so a config
// that passes check-config does not then fail to start for any of these.
//
// It writes nothing: directories are checked with access(2), never by
// creating a file in them. Each error names the config field and says how
// to fix it; warnings (a placeholder left in, no authority) do not stop
// the agent.
func preflight(cfg *config.Config) (warnings []string, err error) {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", cfg.Where(field), field, fmt.Sprintf(format, a...)))
	}
	if err := agent.CheckFiles(cfg); err != nil {
		errs = append(errs, err)
	}

	// On a node, attribution reads <host_root>/proc and etc/passwd (a
	// simulated node's root is its scenario's).
	if cfg.Devices.Source == "nvml" {
		if st, err := os.Stat(filepath.Join(cfg.Attribution.HostRoot, "proc")); err != nil || !st.IsDir() {
			bad("attribution.host_root", "%s has no proc directory: use / on a node, or where the host's / is mounted in a container", cfg.Attribution.HostRoot)
		}
	}

	if cfg.Authority.URL != "" && cfg.Authority.LogKey == "" {
		warnings = append(warnings, fmt.Sprintf("%s: authority.log_key is not set: the authority's log key is trusted on first use and pinned in the spool; set it to the key the authority prints so that its log is checked from the start", cfg.Where("authority.log_key")))
	}

	// The directories run creates or writes, in the order it does.
	if err := writableDir(cfg.StateDir); err != nil {
		bad("state_dir", "%v", err)
	}
	if cfg.Spool.Path != "" {
		if err := writableDir(filepath.Dir(cfg.Spool.Path)); err != nil {
			bad("spool.path", "%v", err)
		}
	}
	if p := cfg.Output.RecordsFile; p != "" {
		if err := writableFile(p); err != nil {
			bad("output.records_file", "%v", err)
		}
	}

	for _, field := range []string{"node.id", "node.provider"} {
		v := cfg.Node.ID
		if field == "node.provider" {
			v = cfg.Node.Provider
		}
		if v == placeholders[field] {
			warnings = append(warnings, fmt.Sprintf("%s: %s: %q is the shipped example's placeholder: set this node's own", cfg.Where(field), field, v))
		}
	}
	for i, r := range cfg.Attribution.Rules {
		switch {
		case r.GPU == placeholderGPU:
			warnings = append(warnings, fmt.Sprintf("%s: attribution.rules[%d].gpu: %s is the shipped example's placeholder: use a UUID from gpumeter devices", cfg.Where("attribution.rules"), i, r.GPU))
		case r.User == placeholderUser:
			warnings = append(warnings, fmt.Sprintf("%s: attribution.rules[%d].user: %q is the shipped example's placeholder: use a real user of this node", cfg.Where("attribution.rules"), i, r.User))
		}
	}
	if cfg.Authority.URL == "" {
		warnings = append(warnings, fmt.Sprintf("%s: authority.url: not set: records are metered and spooled, never reported or paid for", cfg.Where("authority.url")))
	} else {
		checkKey(cfg, bad)
		for _, f := range []struct{ field, path string }{
			{"authority.ca_file", cfg.Authority.CAFile},
			{"authority.cert_file", cfg.Authority.CertFile},
			{"authority.key_file", cfg.Authority.KeyFile},
		} {
			if f.path == "" {
				continue
			}
			if err := readable(f.path); err != nil {
				bad(f.field, "%v", err)
			}
		}
	}

	return warnings, errors.Join(errs...)
}

// checkKey loads the signing key as the reporter will, and turns its
// failures into what to do about them.
func checkKey(cfg *config.Config, bad func(field, format string, a ...any)) {
	path := cfg.KeyFile()
	_, err := signing.LoadKeyFile(path)
	var me *signing.ModeError
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		bad("signing.key_file", "%s: no such file (create it: gpumeter keygen %s, then register its public key with the authority)", path, path)
	case errors.As(err, &me):
		bad("signing.key_file", "%s: mode %04o: others may read the node's key; it must be 0600 (chmod 600 %s, and consider the key exposed)", path, me.Mode.Perm(), path)
	case errors.Is(err, fs.ErrPermission):
		bad("signing.key_file", "%s: cannot be read by this user (run the agent as the key's owner, or chown it)", path)
	default:
		bad("signing.key_file", "%v", err)
	}
}

// writableDir says why the agent could not create dir (as MkdirAll) or
// create files in it; nil when it can. Nothing is created.
func writableDir(dir string) error {
	p := filepath.Clean(dir)
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				if p == filepath.Clean(dir) {
					return fmt.Errorf("%s is not a directory", dir)
				}
				return fmt.Errorf("%s cannot be created: %s is not a directory", dir, p)
			}
			if err := syscall.Access(p, 0o2|0o1); err != nil { // W_OK|X_OK
				if p == filepath.Clean(dir) {
					return fmt.Errorf("%s is not writable by this user (%v): chown it to the agent's user", dir, err)
				}
				return fmt.Errorf("%s cannot be created: %s is not writable by this user (%v): create it for the agent's user", dir, p, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			if errors.Is(err, syscall.ENOTDIR) {
				return fmt.Errorf("%s cannot be created: a parent is not a directory", dir)
			}
			return fmt.Errorf("%s: %v", dir, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("%s: no existing parent directory", dir)
		}
		p = parent
	}
}

// writableFile says why the agent could not open path for appending,
// creating it if need be (its directory must exist: run does not create
// it); nil when it can. Nothing is created.
func writableFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil:
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", path)
		}
		if err := syscall.Access(path, 0o2); err != nil {
			return fmt.Errorf("%s is not writable by this user (%v)", path, err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(path)
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() {
			return fmt.Errorf("%s: directory %s does not exist (create it for the agent's user)", path, dir)
		}
		if err := syscall.Access(dir, 0o2|0o1); err != nil {
			return fmt.Errorf("%s: directory %s is not writable by this user (%v)", path, dir, err)
		}
		return nil
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s: a parent is not a directory", path)
	default:
		return err
	}
}

// readable says why path cannot be read; nil when it can.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %s", path, strings.TrimSpace(pe.Err.Error()))
		}
		return err
	}
	return f.Close()
}
