// Package tlsfile reads the PEM files that TLS configuration names, with
// errors that name the file: the agent's CA for the authority and the
// authority's client CA read the same way.
package tlsfile

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CertPool reads the PEM certificates in path into a new pool. A file that
// cannot be read, or holds no PEM certificate, is an error naming it.
func CertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
