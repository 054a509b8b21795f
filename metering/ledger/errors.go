package ledger

import "errors"

// Cause is why Open refused a batch; its value is the protocol's problem
// type suffix (docs/protocol.md), so the authority maps it one to one.
type Cause string

func (c Cause) Error() string { return string(c) }

// The causes Open returns, wrapped with detail.
const (
	ErrMalformed     Cause = "malformed"
	ErrUnknownKey    Cause = "unknown-key"
	ErrRevokedKey    Cause = "revoked-key"
	ErrBadSignature  Cause = "bad-signature"
	ErrNodeMismatch  Cause = "node-mismatch"
	ErrInvalidRecord Cause = "invalid-record"
)

// CauseOf returns the Cause in err's chain, if any.
func CauseOf(err error) (Cause, bool) {
	var c Cause
	if errors.As(err, &c) {
		return c, true
	}
	return "", false
}
