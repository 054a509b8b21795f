package ledger

import (
	"errors"

	"github.com/gpumeter/gpumeter/protocol"
)

// Cause is why Open refused a batch; its value is the protocol's problem
// type suffix (docs/protocol.md), so the authority maps it one to one.
type Cause string

func (c Cause) Error() string { return string(c) }

// The causes Open returns, wrapped with detail.
const (
	ErrMalformed     Cause = protocol.Malformed
	ErrUnknownKey    Cause = "unknown-key"
	ErrRevokedKey    Cause = "revoked-key"
	ErrBadSignature  Cause = "bad-signature"
	ErrNodeMismatch  Cause = "node-mismatch"
	ErrInvalidRecord Cause = "invalid-record"
	// The record rules that have a cause of their own (check.go):
	ErrDuplicateKey     Cause = protocol.DuplicateKey
	ErrInvalidName      Cause = protocol.InvalidName
	ErrInvalidUUID      Cause = protocol.InvalidUUID
	ErrKindFields       Cause = protocol.KindFields
	ErrInvalidValue     Cause = protocol.InvalidValue
	ErrSliceMismatch    Cause = protocol.SliceMismatch
	ErrInvalidInventory Cause = protocol.InvalidInventory
)

// AfterVerification reports whether Open finds c only in a payload whose
// signature verified (so the signing key, and its node, are known).
// ErrMalformed and ErrDuplicateKey are found in the envelope too, before.
func (c Cause) AfterVerification() bool {
	switch c {
	case ErrNodeMismatch, ErrInvalidRecord, ErrInvalidName, ErrInvalidUUID, ErrKindFields,
		ErrInvalidValue, ErrSliceMismatch, ErrInvalidInventory:
		return true
	}
	return false
}

// CauseOf returns the Cause in err's chain, if any.
func CauseOf(err error) (Cause, bool) {
	var c Cause
	if errors.As(err, &c) {
		return c, true
	}
	return "", false
}
