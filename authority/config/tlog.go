package config

import (
	"fmt"
	"strings"
)

// VerifiableLog is the verifiable_log section: the key that signs the
// log's checkpoints and the log's origin (docs/protocol.md, "The
// verifiable log"). Both empty: the authority keeps no log. (The section
// is not log:, which sets serve's logging.)
type VerifiableLog struct {
	// KeyFile is the log's Ed25519 key (voucher-authority log keygen),
	// mode 0600: serve refuses it otherwise.
	KeyFile string `yaml:"key_file"`
	// Origin names the log in every checkpoint, by convention a URL
	// without scheme (authority.example.com/log); never change it: agents
	// pin the key named by it.
	Origin string `yaml:"origin"`
}

// Enabled says whether the section asks for a log.
func (l VerifiableLog) Enabled() bool { return l.KeyFile != "" || l.Origin != "" }

// Check validates the section on its own (the key generator's --origin).
func (l VerifiableLog) Check() error {
	for _, v := range l.validate() {
		return fmt.Errorf("%s: %s", strings.Join(v.path, "."), v.msg)
	}
	return nil
}

// validate checks the section; paths start with "verifiable_log".
func (l VerifiableLog) validate() []invalid {
	if !l.Enabled() {
		return nil
	}
	var out []invalid
	bad := func(msg string, path ...string) {
		out = append(out, invalid{append([]string{"verifiable_log"}, path...), msg})
	}
	if l.KeyFile == "" {
		bad("must be set with origin (a file made by voucher-authority log keygen, mode 0600)", "key_file")
	}
	switch {
	case l.Origin == "":
		bad("must be set with key_file (the log's name, e.g. authority.example.com/log)", "origin")
	case strings.ContainsAny(l.Origin, " +\n\t\r"):
		bad(fmt.Sprintf("%q must have no space, '+' or newline", l.Origin), "origin")
	}
	return out
}
