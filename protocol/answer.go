package protocol

import "time"

// BatchAnswer is the authority's 200 answer to POST /v1/batches.
type BatchAnswer struct {
	Node string `json:"node"`
	// Head is the highest sequence number durably stored for the node.
	Head      uint64 `json:"head"`
	Duplicate bool   `json:"duplicate"`
	// Log is the batch's place in the verifiable log (absent when the
	// authority runs without one).
	Log *LogReceipt `json:"log,omitempty"`
}

// HeadAnswer is the answer to GET /v1/nodes/{id}/head: head 0 and hash ""
// when nothing is stored.
type HeadAnswer struct {
	Node     string `json:"node"`
	Head     uint64 `json:"head"`
	HeadHash string `json:"head_hash"`
	// LastWindowEnd is the latest window end among the node's stored
	// records (absent when none): where a node that lost its spool
	// starts its spool_lost gap.
	LastWindowEnd *time.Time `json:"last_window_end,omitempty"`
	// Log carries the authority's current checkpoint (and the consistency
	// proof from the size in LogSizeHeader): what an agent checks before
	// it sends again batches that a restored authority lost.
	Log *LogReceipt `json:"log,omitempty"`
}
