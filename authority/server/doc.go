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
// Every refusal is logged once, at warn level, with the node and the cause,
// and kept in the audit trail (Auditor: the store's bounded table of
// refusals); failing to keep it is logged and counted, and never changes
// the answer. Answers 500 (the authority's own failures) are not refusals.
//
// /metrics also reads the store at each scrape (storeCollector, one
// indexed read per table): held subsidies, reviews by status, and per node
// and GPU what was delivered and what is covered, for the alert rules of
// packaging/prometheus/authority-alerts.yml. A failed read is counted,
// never a failed scrape.
//
// It must never log or answer with key material or internal error text,
// and never answer 500 for something the sender got wrong.
package server
