package authoritytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority for TLS tests: a CA, a server
// certificate for 127.0.0.1 and localhost and a client certificate, both
// signed by the CA, valid for an hour either side of now. Every
// certificate and key is also a PEM file in its own t.TempDir().
type PKI struct {
	CA, Server, Client Issued
}

// Issued is a certificate with its key, in memory and as PEM files.
type Issued struct {
	Cert              *x509.Certificate
	Key               *ecdsa.PrivateKey
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
	Pair              tls.Certificate // for tls.Config.Certificates
}

// NewPKI issues a fresh CA and the server and client certificates it signs.
// Two PKIs share nothing: one's CA is the "wrong CA" for the other.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca := issue(t, dir, "ca", "authority CA", nil, true)
	return &PKI{
		CA:     ca,
		Server: issue(t, dir, "server", "authority", &ca, false),
		Client: issue(t, dir, "client", "node-01", &ca, false),
	}
}

// Pool holds the CA alone: the roots a client trusts, or the client CAs a
// server accepts.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return pool
}

// ServerTLS serves the server certificate; with requireClientCert it
// refuses a client without a certificate signed by the CA.
func (p *PKI) ServerTLS(requireClientCert bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.Server.Pair}, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		c.ClientCAs, c.ClientAuth = p.Pool(), tls.RequireAndVerifyClientCert
	}
	return c
}

// issue makes a certificate for 127.0.0.1 and localhost signed by parent
// (self-signed when parent is nil) and writes name.pem and name.key in dir.
func issue(t testing.TB, dir, name, cn string, parent *Issued, isCA bool) Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Random serials: certificates from one CA must not share one, and
	// two PKIs issued in the same nanosecond must not either.
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: isCA, BasicConstraintsValid: true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	is := Issued{
		Key:      key,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		CertFile: filepath.Join(dir, name+".pem"),
		KeyFile:  filepath.Join(dir, name+".key"),
	}
	if is.Cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if is.Pair, err = tls.X509KeyPair(is.CertPEM, is.KeyPEM); err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string][]byte{is.CertFile: is.CertPEM, is.KeyFile: is.KeyPEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return is
}
