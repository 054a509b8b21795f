package protocol

// The authority's verifiable log on the wire (docs/protocol.md, "The
// verifiable log"). Hashes are base64 in JSON ([]byte); checkpoints are
// signed notes in the C2SP tlog-checkpoint format, as text.

// LogSizeHeader is sent by an agent with a batch or a head read: the size
// of the newest checkpoint it keeps, so that the answer can carry the
// consistency proof from it.
const LogSizeHeader = "Gpumeter-Log-Size"

// Log endpoints (GET). Checkpoints and proofs reveal nothing about usage
// and need no credential; leaves are the operator's.
const (
	PathLogCheckpoint  = "/v1/log/checkpoint"        // text/plain signed note
	PathLogKey         = "/v1/log/key"               // text/plain note verifier key
	PathLogInclusion   = "/v1/log/proof/inclusion"   // ?index=I&size=N -> LogProof
	PathLogConsistency = "/v1/log/proof/consistency" // ?from=M&to=N -> LogProof
)

// LogReceipt is the log's part of the answer to an accepted (or duplicate)
// batch, and of a head read: where the batch's leaf is and a checkpoint
// that includes it.
type LogReceipt struct {
	// LeafIndex is the index of the batch's leaf (absent in a head read).
	LeafIndex *uint64 `json:"leaf_index,omitempty"`
	// Checkpoint is the signed checkpoint note the proofs are against.
	Checkpoint string `json:"checkpoint"`
	// Inclusion proves LeafIndex in Checkpoint's tree.
	Inclusion [][]byte `json:"inclusion,omitempty"`
	// ConsistencyFrom is the size the agent sent in LogSizeHeader, and
	// Consistency the proof from it to Checkpoint's size (absent when the
	// header was absent, zero, or larger than the tree).
	ConsistencyFrom uint64   `json:"consistency_from,omitempty"`
	Consistency     [][]byte `json:"consistency,omitempty"`
}

// LogProof is the answer of the proof endpoints.
type LogProof struct {
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"`
}
