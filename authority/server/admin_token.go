package server

import (
	"bytes"
	"fmt"
	"io/fs"

	"github.com/gpumeter/gpumeter/internal/fsutil"
)

// LoadAdminToken reads the operators' bearer token from path. Like the
// node's signing key, the file must be a regular file no one but its owner
// may read or write (mode 0600 or stricter); surrounding whitespace is
// dropped and the rest must be at least MinAdminTokenLen printable ASCII
// characters. Errors describe the file, never its content.
func LoadAdminToken(path string) ([]byte, error) {
	const maxTokenFile = 4 << 10
	data, err := fsutil.ReadSecret(fsutil.Secret{
		Path: path, File: "admin token file", Name: "admin token file", NotA: "a token", Max: maxTokenFile,
		ModeErr: func(mode fs.FileMode) error {
			return fmt.Errorf("admin token file %s has mode %04o: must not be readable by group or others (chmod 600)",
				path, uint32(mode.Perm()))
		},
	})
	if err != nil {
		return nil, err
	}
	tok := bytes.TrimSpace(data)
	for _, c := range tok {
		if c <= ' ' || c > '~' {
			return nil, fmt.Errorf("admin token file %s: the token must be one word of printable ASCII", path)
		}
	}
	if len(tok) < MinAdminTokenLen {
		return nil, fmt.Errorf("admin token file %s: the token has %d characters, want at least %d (openssl rand -hex 32)",
			path, len(tok), MinAdminTokenLen)
	}
	return tok, nil
}
