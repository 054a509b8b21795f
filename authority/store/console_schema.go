package store

// consoleMigration keeps the web console's sign-in (docs/console.md):
// scoped tokens for a provider's staff or an entity, stored as SHA-256
// hashes only, and the sessions signed in with them (or with the
// operators' token, token_id ”). A session row is keyed by the hash of
// its cookie value, so a read of the database does not give away live
// sessions either. Times are Unix ms. The two indexes serve the console's
// overview with aggregate SQL over a year of records.
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
	`CREATE INDEX console_records_day ON records(kind, window_start_ms, provider, model, gpu_ms)`,
	`CREATE INDEX console_charges_program ON charges(program_id, review, subsidy_fen)`,
}
