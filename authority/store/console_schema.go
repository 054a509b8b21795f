package store

// consoleMigration keeps the web console's sign-in (docs/console.md):
// scoped tokens for a provider's staff or an entity, stored as SHA-256
// hashes only, and the sessions signed in with them (or with the
// operators' token, with an empty token_id). A session row is keyed by the hash of
// its cookie value, so a read of the database does not give away live
// sessions either. Times are Unix ms.
//
// console_usage_days is the overview's rollup (console_read.go): usage
// GPU time per day (China Standard Time), provider, model and entity, of
// the batches received up to console_rollup.folded_ms. Aggregating a year
// of records per request is seconds on SQLite; the rollup keeps it to the
// days asked for.
var consoleMigration = []string{
	`CREATE TABLE console_tokens (
		id         TEXT PRIMARY KEY,
		role       TEXT NOT NULL,
		scope      TEXT NOT NULL,
		label      TEXT NOT NULL,
		hash       TEXT NOT NULL UNIQUE,
		created_ms BIGINT NOT NULL,
		revoked_ms BIGINT NULL
	)`,
	`CREATE TABLE console_sessions (
		id_hash    TEXT PRIMARY KEY,
		token_id   TEXT NOT NULL,
		role       TEXT NOT NULL,
		scope      TEXT NOT NULL,
		csrf       TEXT NOT NULL,
		created_ms BIGINT NOT NULL,
		expires_ms BIGINT NOT NULL
	)`,
	`CREATE INDEX console_sessions_token ON console_sessions(token_id)`,
	`CREATE TABLE console_usage_days (
		day       BIGINT NOT NULL,
		provider  TEXT NOT NULL,
		model     TEXT NOT NULL,
		entity_id TEXT NOT NULL,
		gpu_ms    BIGINT NOT NULL,
		PRIMARY KEY (day, provider, model, entity_id)
	)`,
	`CREATE TABLE console_rollup (
		id        BIGINT PRIMARY KEY,
		folded_ms BIGINT NOT NULL
	)`,
	`INSERT INTO console_rollup (id, folded_ms) VALUES (1, 0)`,
	`CREATE INDEX console_batches_received ON batches(received_at)`,
	`CREATE INDEX console_records_batch ON records(node_id, batch_first_seq)`,
}
