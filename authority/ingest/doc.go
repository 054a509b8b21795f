// Package ingest is the authority's verification pipeline for one batch
// envelope, in the order of docs/protocol.md: authenticate and decode
// (ledger.Open, with keys from the store), then the checks that need the
// authority's clock (no window in the future, no record with more GPU
// time than its window, record ids that are the records' identity), then
// the store's one transaction (sequence, duplicate, fork, chain, GPU
// ownership, per-unit wall time). Every refusal is a *problem.Problem with
// the protocol's cause.
//
// The body size limit is the HTTP layer's (authority/server), applied
// before any byte reaches this package.
//
// It must never verify a signature itself (ledger.Open is the one
// implementation), never parse a payload before it is verified, and never
// store anything of a refused batch.
package ingest
