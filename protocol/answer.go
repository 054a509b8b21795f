package protocol

import "time"

// BatchAnswer is the authority's 200 answer to POST /v1/batches.
type BatchAnswer struct {
	Node string `json:"node"`
	// Head is the highest sequence number durably stored for the node.
	Head      uint64 `json:"head"`
	Duplicate bool   `json:"duplicate"`
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
}
