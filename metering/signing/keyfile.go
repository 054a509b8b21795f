package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/gpumeter/gpumeter/internal/fsutil"
)

// pemType is the PEM block type of a key file (PKCS#8).
const pemType = "PRIVATE KEY"

// maxKeyFileBytes bounds what LoadKeyFile reads: a key file is ~120 bytes,
// anything much larger is not one.
const maxKeyFileBytes = 16 << 10

// ModeError is returned by LoadKeyFile for a key file that group or others
// may read or write.
type ModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("key %s has mode %04o: must not be readable by group or others (chmod 600)",
		e.Path, uint32(e.Mode.Perm()))
}

// GenerateKeyFile writes a new Ed25519 key to path (mode 0600) and returns
// its public key. It refuses to replace an existing file, and a crash
// while it runs leaves no partial key. The file and its directory are
// fsynced before it returns.
func GenerateKeyFile(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", path, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode key for %s: %w", path, err)
	}
	if err := writeNewFile(path, &pem.Block{Type: pemType, Bytes: der}); err != nil {
		return nil, err
	}
	return pub, nil
}

// writeNewFile writes b to path, mode 0600, all or nothing: the PEM goes to
// a renameio temporary file in path's directory, is fsynced, and is then
// hard-linked to path. A link, not renameio's rename, because rename
// replaces and the file there may be the key the authority has registered:
// replacing it would orphan the node, so an existing path is an error
// (link(2) refuses it atomically). A crash leaves either no key or the
// whole key, never a partial file that blocks the next attempt.
func writeNewFile(path string, b *pem.Block) error {
	t, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(0o600))
	if err != nil {
		return fmt.Errorf("create key file %s: %w", path, err)
	}
	defer func() { _ = t.Cleanup() }() // the temporary name only; path stays
	if err := pem.Encode(t, b); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := t.Sync(); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := os.Link(t.Name(), path); err != nil {
		return fmt.Errorf("create key file %s (an existing key is never overwritten): %w", path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("sync directory of key file %s: %w", path, err)
	}
	return nil
}

// LoadKeyFile reads the Ed25519 private key at path. It refuses a file that
// group or others may read or write (*ModeError), anything but a regular
// file, and any content other than one PKCS#8 Ed25519 PEM block.
func LoadKeyFile(path string) (ed25519.PrivateKey, error) {
	data, err := fsutil.ReadSecret(fsutil.Secret{
		Path: path, File: "key file", Name: "key", NotA: "a key file", Max: maxKeyFileBytes,
		ModeErr: func(mode fs.FileMode) error { return &ModeError{Path: path, Mode: mode} },
	})
	if err != nil {
		return nil, err
	}
	// Errors below describe the shape, never the bytes: the content is secret.
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key %s: no PEM block", path)
	}
	if block.Type != pemType {
		return nil, fmt.Errorf("key %s: PEM block is %q, want %q", path, block.Type, pemType)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("key %s: unexpected data after the PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: not a PKCS#8 private key", path)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: a %T key, want Ed25519", path, k)
	}
	return priv, nil
}

// EncodePublicKey is the exchange form of a public key: standard padded
// base64 of the raw 32 bytes.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// DecodePublicKey parses EncodePublicKey's form.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("decode public key: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("decode public key: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// errNoKey is returned by the DSSE adapters when built without a key.
var errNoKey = errors.New("no ed25519 key")
