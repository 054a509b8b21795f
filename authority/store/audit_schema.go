package store

// auditMigration is the audit trail: every batch the authority refused
// (docs/operations.md, "The audit trail"), with what was known of it when
// it was refused and its first bytes. Refusals are evidence, not state:
// nothing reads them to decide anything, and each node's rows are bounded
// (MaxRefusalsPerNode, oldest deleted first; refusals from before the
// batch was authenticated all count as node ""), so a sender of garbage
// cannot fill the disk. Times are Unix ms.
var auditMigration = []string{
	`CREATE TABLE refusals (
		id              {{serial}},
		node_id         TEXT NOT NULL,
		key_id          TEXT NOT NULL,
		first_seq       BIGINT NOT NULL,
		received_ms     BIGINT NOT NULL,
		cause           TEXT NOT NULL,
		detail          TEXT NOT NULL,
		remote          TEXT NOT NULL,
		envelope_sha256 TEXT NOT NULL,
		envelope_size   BIGINT NOT NULL,
		envelope        {{bytes}} NOT NULL,
		truncated       BOOLEAN NOT NULL
	)`,
	// The bound deletes a node's oldest rows; listings filter by node.
	`CREATE INDEX refusals_node ON refusals(node_id, id)`,
	`CREATE INDEX refusals_received ON refusals(received_ms)`,
}
