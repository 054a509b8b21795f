package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// PayloadType is the DSSE payload type of a batch; it carries the schema version.
const PayloadType = "application/vnd.gpumeter.batch.v1+json"

// MaxRecordsPerBatch bounds a batch (the authority rejects larger ones).
const MaxRecordsPerBatch = 10000

// Batch is the signed payload: consecutive records of one node.
type Batch struct {
	Node     string    `json:"node"`
	KeyID    string    `json:"key_id"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	PrevHash string    `json:"prev_hash"`
	Created  time.Time `json:"created"`
	// Instance names the copy of the agent that sealed the batch: a random
	// id generated at first start and kept with the host facts it was made
	// on, so that a copied disk image gets its own. It is what a
	// second-signer refusal and the authority's flag name; it is not a
	// credential (the key is).
	Instance string   `json:"instance,omitempty"`
	Records  []Record `json:"records"`
}

// Hash is the chain hash of a batch: hex sha256 of its exact payload bytes.
func Hash(payload []byte) string {
	sum := sha256.Sum256(payload)
	return hex.EncodeToString(sum[:])
}
