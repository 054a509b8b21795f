// Package signing holds the node's Ed25519 identity (docs/protocol.md
// "Keys"): it creates and loads the key file, encodes public keys for
// exchange, and adapts ed25519 to go-securesystemslib's DSSE Signer and
// Verifier interfaces.
//
// It must never log, print or put into an error any private key material,
// and never load a key file that group or others can read or write: the
// key is what makes a node's usage billable.
//
// # Key file
//
// A key file is one PEM block "PRIVATE KEY" holding the PKCS#8 encoding of
// the Ed25519 key, mode 0600. GenerateKeyFile creates it with O_EXCL (an
// existing file, perhaps the key the authority knows, is never replaced)
// and fsyncs the file and its directory, so a key that was reported as
// written survives a power loss. LoadKeyFile checks the mode of the opened
// file (fstat, not a second lookup by name) before reading a byte of it.
//
// # Key id
//
// Key ids are KeyID: "ed25519:" + the first 16 hex characters of
// sha256 of the raw public key. The DSSE signature's keyid carries it, so
// the authority finds the key (and its node) before it verifies.
package signing
