package server

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// LoadAdminToken reads the operators' bearer token from path. Like the
// node's signing key, the file must be a regular file no one but its owner
// may read or write (mode 0600 or stricter); surrounding whitespace is
// dropped and the rest must be at least MinAdminTokenLen printable ASCII
// characters. Errors describe the file, never its content.
func LoadAdminToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open admin token file: %w", err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat admin token file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("admin token file %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("admin token file %s has mode %04o: must not be readable by group or others (chmod 600)",
			path, uint32(st.Mode().Perm()))
	}
	const maxTokenFile = 4 << 10
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, fmt.Errorf("read admin token file %s: %w", path, err)
	}
	if len(data) > maxTokenFile {
		return nil, fmt.Errorf("admin token file %s: larger than %d bytes, not a token", path, maxTokenFile)
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
