package fsutil

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Secret describes a secret file for ReadSecret and names it in its errors.
// The errors describe the file, never its content.
type Secret struct {
	Path string
	// File names the file in open, stat and read errors ("open key file").
	File string
	// Name names it in the other errors ("key PATH is not a regular file").
	Name string
	// NotA ends the too-large error ("larger than N bytes, not a key file").
	NotA string
	// Max is the largest size accepted, in bytes.
	Max int
	// ModeErr is the error for a file group or others may read or write.
	ModeErr func(mode fs.FileMode) error
}

// ReadSecret reads a secret file: a regular file no one but its owner may
// read or write (mode 0600 or stricter) of at most s.Max bytes.
func ReadSecret(s Secret) ([]byte, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.File, err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s %s: %w", s.File, s.Path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file (%s)", s.Name, s.Path, st.Mode().Type())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, s.ModeErr(st.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(s.Max)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", s.File, s.Path, err)
	}
	if len(data) > s.Max {
		return nil, fmt.Errorf("%s %s: larger than %d bytes, not %s", s.Name, s.Path, s.Max, s.NotA)
	}
	return data, nil
}
