package store

import (
	"errors"
	"fmt"
)

// Errors the store returns, wrapped with detail; test with errors.Is.
var (
	// Registry.
	ErrNodeNotFound = errors.New("node is not registered")
	ErrNodeExists   = errors.New("node is already registered")
	ErrKeyNotFound  = errors.New("key is not registered")
	ErrKeyExists    = errors.New("key is already registered")
	ErrKeyRevoked   = errors.New("key is already revoked")
	// ErrInvalidRegistration: a name, UUID, model or time the registry
	// refuses.
	ErrInvalidRegistration = errors.New("invalid registration")

	// Ingest: each is one protocol rejection cause.
	// ErrSecondSigner: a batch whose signature verified but that does not
	// link into the stored chain: a second copy of the node signs.
	ErrSecondSigner = errors.New("a second copy of the node signed a batch that conflicts with the stored chain")
	ErrSequenceGap  = errors.New("batch skips sequence numbers")
	ErrOverWallTime = errors.New("GPU time exceeds wall time")
	// ErrOverGPUTime: a physical GPU's slice-weighted time exceeds wall
	// time, or its record intervals cross.
	ErrOverGPUTime      = errors.New("physical GPU time exceeds wall time")
	ErrGPUNotRegistered = errors.New("GPU is not registered to the node")
	ErrGPUClaimed       = errors.New("GPU is registered to another node")
	ErrInvalidRecord    = errors.New("invalid record")
	// ErrRevokedAtIngest: the batch's key was revoked before the ingest
	// transaction read it (a revocation that raced the request).
	ErrRevokedAtIngest = errors.New("key is revoked")
	// ErrLayoutOrder: an inventory gives a GPU a layout older than its
	// latest one.
	ErrLayoutOrder = errors.New("layout out of order")
)

// SeqError is a sequence conflict (a gap, a second signer): the node
// should send from Expected next.
type SeqError struct {
	Err      error // ErrSequenceGap or ErrSecondSigner
	Expected uint64
	Detail   string
	// Instance and StoredInstance (ErrSecondSigner): the instance id the
	// refused batch carries and that of the stored batch it conflicts
	// with ("" when none was sent).
	Instance, StoredInstance string
}

func (e *SeqError) Error() string {
	return fmt.Sprintf("%v: %s (expected seq %d)", e.Err, e.Detail, e.Expected)
}

func (e *SeqError) Unwrap() error { return e.Err }

// Billing operation errors (billing_ops.go).
var (
	ErrInvalidBilling  = errors.New("invalid billing input")
	ErrBillingConflict = errors.New("billing conflict")
	ErrBillingNotFound = errors.New("billing object not found")
)

// Audit trail and review queue errors (audit.go, review.go).
var (
	ErrRefusalNotFound = errors.New("refusal not found")
	ErrReviewNotFound  = errors.New("review not found")
	ErrReviewDecided   = errors.New("review is already decided")
)
