package signing_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
)

func TestGenerateAndLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	pub, err := signing.GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file mode %04o, want 0600", st.Mode().Perm())
	}
	priv, err := signing.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("loaded key does not match the generated public key")
	}
}

func TestGenerateRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	if _, err := signing.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.GenerateKeyFile(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second generate: err = %v, want os.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("existing key file was changed")
	}
	// The refused attempt's temporary file is gone: only the key is left.
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "node.key" {
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %q, want only node.key", names)
	}
}

func TestLoadModes(t *testing.T) {
	tests := []struct {
		name    string
		mode    os.FileMode
		wantErr string
	}{
		{"0600 ok", 0o600, ""},
		{"0400 ok", 0o400, ""},
		{"0640 group readable", 0o640, "has mode 0640: must not be readable by group or others (chmod 600)"},
		{"0604 others readable", 0o604, "has mode 0604: must not be readable by group or others (chmod 600)"},
		{"0620 group writable", 0o620, "has mode 0620"},
		{"0644", 0o644, "has mode 0644"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.key")
			if _, err := signing.GenerateKeyFile(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := signing.LoadKeyFile(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want it to name %s and contain %q", err, path, tc.wantErr)
			}
			var me *signing.ModeError
			if !errors.As(err, &me) || me.Mode.Perm() != tc.mode {
				t.Fatalf("err = %#v, want *ModeError with mode %04o", err, tc.mode)
			}
		})
	}
}

func TestLoadRefusesContent(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(testutil.NewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"garbage", []byte("not a key at all\n"), "no PEM block"},
		{"empty", nil, "no PEM block"},
		{"ecdsa key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "want Ed25519"},
		{"wrong block type", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: edDER}), "PEM block is"},
		{"pem with garbage body", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}), "not a PKCS#8"},
		{"two blocks", append(append([]byte{}, good...), good...), "unexpected data after"},
		{"huge", make([]byte, 64<<10), "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.key")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := signing.LoadKeyFile(path)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("error never holds key bytes", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "node.key")
		// A valid key with a trailing block: refused after decoding.
		if err := os.WriteFile(path, append(append([]byte{}, good...), good...), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := signing.LoadKeyFile(path)
		if err == nil {
			t.Fatal("loaded a file with two blocks")
		}
		body := strings.Split(string(good), "\n")[1]
		if strings.Contains(err.Error(), body[:16]) {
			t.Fatalf("error contains key material: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := signing.LoadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v, want not a regular file", err)
		}
	})
}

func TestPublicKeyEncoding(t *testing.T) {
	pub := testutil.NewPublicKey(t)
	s := signing.EncodePublicKey(pub)
	if len(s) != 44 {
		t.Fatalf("encoded key %q has %d chars, want 44 (padded base64 of 32 bytes)", s, len(s))
	}
	got, err := signing.DecodePublicKey(s)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	tests := []struct{ name, in string }{
		{"not base64", "%%%"},
		{"short", "AAAA"},
		{"unpadded", strings.TrimRight(s, "=")},
		{"url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(s) + "-_"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := signing.DecodePublicKey(tc.in); err == nil {
				t.Fatalf("decoded %q", tc.in)
			}
		})
	}
}
