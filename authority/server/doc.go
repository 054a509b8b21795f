// Package server is the authority's HTTP face: POST /v1/batches (through
// authority/ingest), GET /v1/nodes/{id}/head, GET /v1/usage, /healthz and
// Prometheus /metrics on a private registry, served over TLS (optionally
// requiring client certificates) when certificate files are given.
//
// Reads of usage data (head, usage) need a signed read by a node's key,
// which reads that node's data only, or the operators' bearer token
// (read_auth.go).
//
// Bodies are bounded before they are read (http.MaxBytesReader): an
// oversized batch is refused as body-too-large without being buffered.
// Every refusal is logged once, at warn level, with the node and the cause.
//
// It must never log or answer with key material or internal error text,
// and never answer 500 for something the sender got wrong.
package server
