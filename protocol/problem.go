package protocol

// Problems: the authority's errors as RFC 9457 problem details
// (application/problem+json), one stable type URI per protocol cause.
// A problem sent to a client must never carry internal error text (SQL,
// file paths): Internal carries a fixed detail, the cause is logged.

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TypeBase prefixes every problem type: TypeBase + cause.
const TypeBase = "https://gpumeter.dev/problems/"

// ContentType of a problem body.
const ContentType = "application/problem+json"

// Causes (type suffixes) of docs/protocol.md, plus the authority's own.
const (
	BodyTooLarge     = "body-too-large"
	Malformed        = "malformed"
	UnknownKey       = "unknown-key"
	RevokedKey       = "revoked-key"
	BadSignature     = "bad-signature"
	NodeMismatch     = "node-mismatch"
	Fork             = "fork"
	SequenceGap      = "sequence-gap"
	ChainBroken      = "chain-broken"
	FutureWindow     = "future-window"
	OverWallTime     = "over-wall-time"
	GPUNotRegistered = "gpu-not-registered"
	GPUClaimed       = "gpu-claimed"
	InvalidRecord    = "invalid-record"
	// What the authority checks against facts it holds (docs/protocol.md,
	// "Verification order"):
	DuplicateKey     = "duplicate-key"       // a JSON object repeats a member
	InvalidName      = "invalid-name"        // a name breaks protocol.CheckName
	InvalidUUID      = "invalid-uuid"        // a GPU or MIG UUID not in canonical form
	KindFields       = "kind-fields"         // usage with a gap reason, idle or gap with a tenant, ...
	InvalidValue     = "invalid-value"       // utilization, energy or power out of range for the model
	InvalidInventory = "invalid-inventory"   // an inventory the model table refuses
	ModelMismatch    = "model-mismatch"      // a model other than the registered one
	SliceMismatch    = "slice-mismatch"      // slice fields other than the model table's for the profile
	NotInLayout      = "unit-not-in-layout"  // a unit not in its GPU's reported layout at that time
	OverGPUTime      = "over-gpu-time"       // a physical GPU's slice-weighted time above wall time
	BeforeActive     = "before-registration" // a window before its GPU's registration or key's activation
	WindowTooLong    = "window-too-long"     // longer than the node's metering (or merge) window, or across one
	WindowNotEnded   = "window-not-ended"    // ends after the authority's now: retry after Retry-After
	NoInventory      = "no-inventory"        // usage before the node reported any inventory
	// SecondSigner: a batch at a sequence the authority already holds with
	// different content, signed by the node's key: a second copy of the node
	// (a cloned VM image, a restored disk) is signing. The chain stored
	// first is kept and goes on; the node is flagged until an operator
	// clears it (docs/operations.md, "Cloned node").
	SecondSigner = "second-signer"
	// NotFound: no such resource (GET of an unknown node).
	NotFound = "not-found"
	// BadRequest: a query parameter is missing or invalid.
	BadRequest = "bad-request"
	// Internal: the authority failed; the sender may retry (500).
	Internal = "internal"
	// Overloaded: the authority ingests as many batches as it can at once
	// and none finished in time for this one; the sender retries after
	// Retry-After (503), nothing was read or stored.
	Overloaded = "overloaded"
	// The operator API's (authority/server/admin.go):
	Unauthorized    = "unauthorized"     // no or a wrong bearer token, or a read not validly signed
	BillingInvalid  = "billing-invalid"  // a value the billing rules refuse
	BillingConflict = "billing-conflict" // an id that exists, an overlap, a missing reference
)

// held are the refusals that time or an operator can fix without the
// batch changing: a key or GPU registered late, a GPU registered to the
// wrong node, usage before the node's inventory arrived, a window the
// authority's clock has not reached. The agent keeps such a batch and
// sends it again with a long backoff, raising an alert, and never
// dead-letters it: once the authority's facts allow it, the same signed
// bytes are accepted. Every other 4xx is final: the batch is dead-lettered
// as evidence.
var held = map[string]bool{
	UnknownKey:       true,
	RevokedKey:       true,
	GPUNotRegistered: true,
	GPUClaimed:       true,
	NoInventory:      true,
	BeforeActive:     true,
	FutureWindow:     true,
	WindowNotEnded:   true,
}

// Held reports whether a refusal of cause is one that time or an operator
// fixes (the batch is kept and retried), rather than final.
func Held(cause string) bool { return held[cause] }

// causes maps each cause to its status and title.
var causes = map[string]struct {
	status int
	title  string
}{
	BodyTooLarge:     {http.StatusRequestEntityTooLarge, "Request body too large"},
	Malformed:        {http.StatusBadRequest, "Malformed batch envelope"},
	UnknownKey:       {http.StatusUnauthorized, "Unknown signing key"},
	RevokedKey:       {http.StatusUnauthorized, "Revoked signing key"},
	BadSignature:     {http.StatusUnauthorized, "Signature does not verify"},
	NodeMismatch:     {http.StatusForbidden, "Node is not the key's node"},
	Fork:             {http.StatusConflict, "Batch forks the node's chain"},
	SequenceGap:      {http.StatusConflict, "Batch skips sequence numbers"},
	ChainBroken:      {http.StatusConflict, "Batch does not extend the node's chain"},
	FutureWindow:     {http.StatusUnprocessableEntity, "Record window is in the future"},
	OverWallTime:     {http.StatusUnprocessableEntity, "GPU time exceeds wall time"},
	GPUNotRegistered: {http.StatusUnprocessableEntity, "GPU not registered to the node"},
	GPUClaimed:       {http.StatusUnprocessableEntity, "GPU registered to another node"},
	InvalidRecord:    {http.StatusUnprocessableEntity, "Invalid record"},
	DuplicateKey:     {http.StatusBadRequest, "JSON member repeated"},
	InvalidName:      {http.StatusUnprocessableEntity, "Invalid name"},
	InvalidUUID:      {http.StatusUnprocessableEntity, "UUID not in canonical form"},
	KindFields:       {http.StatusUnprocessableEntity, "Fields do not fit the record's kind"},
	InvalidValue:     {http.StatusUnprocessableEntity, "Value out of range"},
	InvalidInventory: {http.StatusUnprocessableEntity, "Invalid inventory"},
	ModelMismatch:    {http.StatusUnprocessableEntity, "Model differs from the registered one"},
	SliceMismatch:    {http.StatusUnprocessableEntity, "Slice share differs from the model table's"},
	NotInLayout:      {http.StatusUnprocessableEntity, "Unit not in the GPU's reported layout"},
	OverGPUTime:      {http.StatusUnprocessableEntity, "Physical GPU time exceeds wall time"},
	BeforeActive:     {http.StatusUnprocessableEntity, "Window before registration"},
	WindowTooLong:    {http.StatusUnprocessableEntity, "Window longer than the node's metering window"},
	WindowNotEnded:   {http.StatusTooEarly, "Window has not ended"},
	NoInventory:      {http.StatusUnprocessableEntity, "No inventory reported"},
	SecondSigner:     {http.StatusConflict, "A second copy of the node is signing"},
	NotFound:         {http.StatusNotFound, "Not found"},
	BadRequest:       {http.StatusBadRequest, "Bad request"},
	Internal:         {http.StatusInternalServerError, "Internal error"},
	Overloaded:       {http.StatusServiceUnavailable, "Authority overloaded"},
	Unauthorized:     {http.StatusUnauthorized, "Unauthorized"},
	BillingInvalid:   {http.StatusBadRequest, "Invalid billing input"},
	BillingConflict:  {http.StatusConflict, "Billing conflict"},
}

// Problem is one RFC 9457 problem detail. It is also an error.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// ExpectedSeq is the sequence the node should send next (409 only).
	ExpectedSeq *uint64 `json:"expected_seq,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds): when a retry can succeed (window-not-ended).
	RetryAfter time.Duration `json:"-"`
	// Hold is true on a held refusal (Held): the sender keeps the batch
	// and retries it; an agent that does not know the cause goes by this.
	Hold bool `json:"hold,omitempty"`
	// AuthorityTime is the authority's clock when it answered, on every
	// problem of the delivery API: a node compares it with its own clock
	// (future-window, window-not-ended) and says by how much they differ.
	AuthorityTime *time.Time `json:"authority_time,omitempty"`
}

// NewProblem builds the problem of cause with detail. An unknown cause is a
// programming error and becomes Internal.
func NewProblem(cause, detail string) *Problem {
	c, ok := causes[cause]
	if !ok {
		cause, c = Internal, causes[Internal]
	}
	return &Problem{Type: TypeBase + cause, Title: c.title, Status: c.status, Detail: detail, Hold: held[cause]}
}

// WithExpected sets expected_seq.
func (p *Problem) WithExpected(seq uint64) *Problem {
	p.ExpectedSeq = &seq
	return p
}

// Cause is the type suffix (for metrics and logs).
// (of a problem built here or decoded from an answer alike); a type that is
// not the protocol's is returned whole, and "" when there is none.
func (p *Problem) Cause() string { return strings.TrimPrefix(p.Type, TypeBase) }

func (p *Problem) Error() string { return p.Cause() + ": " + p.Detail }

// WriteProblem sends p as the response.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((p.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
