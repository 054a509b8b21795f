package store

// logMigration is the verifiable log (docs/protocol.md, "The verifiable
// log"; docs/architecture.md, "The verifiable log"). The exact envelope
// bytes every batch leaf hashes are batches.envelope (migration 1): an
// auditor recomputes each batch leaf from them.
var logMigration = []string{
	// One row once the log is started (StartLog); none: the authority
	// keeps no log and appends nothing. size is the number of leaves;
	// compact the hashes of the compact range [0, size), 32 bytes each,
	// left to right (transparency-dev/merkle/compact). Every append locks
	// this row (FOR UPDATE on PostgreSQL), last in its transaction, so
	// appends are serialized and the tree has one history. verifier_key is
	// the note verifier key the log was started with: another key is
	// refused, since every checkpoint ever served must verify with one.
	`CREATE TABLE log_state (
		id           BIGINT PRIMARY KEY CHECK (id = 1),
		size         BIGINT NOT NULL,
		compact      {{bytes}} NOT NULL,
		verifier_key TEXT NOT NULL,
		started      BIGINT NOT NULL
	)`,
	// Every leaf: its index, kind (tlog.KindBatch or tlog.KindVoucher),
	// data (what is hashed) and RFC 6962 leaf hash.
	`CREATE TABLE log_leaves (
		idx     BIGINT PRIMARY KEY,
		kind    TEXT NOT NULL,
		data    {{bytes}} NOT NULL,
		hash    {{bytes}} NOT NULL,
		created BIGINT NOT NULL
	)`,
	// Every complete subtree of the tree above the leaves (the leaves'
	// hashes are in log_leaves; trees written by the first version also
	// hold level 0 here): any inclusion or consistency proof is at most
	// 2·log2(size) of these, each one primary-key read.
	`CREATE TABLE log_nodes (
		level BIGINT NOT NULL,
		idx   BIGINT NOT NULL,
		hash  {{bytes}} NOT NULL,
		PRIMARY KEY (level, idx)
	)`,
	// Which leaf holds each stored batch: a duplicate's receipt names it.
	`CREATE TABLE log_batches (
		node_id   TEXT NOT NULL,
		first_seq BIGINT NOT NULL,
		leaf_idx  BIGINT NOT NULL UNIQUE REFERENCES log_leaves(idx),
		PRIMARY KEY (node_id, first_seq),
		FOREIGN KEY (node_id, first_seq) REFERENCES batches(node_id, first_seq)
	)`,
	// Every checkpoint signed, one per size (Ed25519 is deterministic:
	// a second note for one size would be a second root, a split view).
	`CREATE TABLE log_checkpoints (
		size    BIGINT PRIMARY KEY,
		note    {{bytes}} NOT NULL,
		created BIGINT NOT NULL
	)`,
}
