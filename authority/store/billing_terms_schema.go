package store

// programTermsMigration adds the terms programs state beyond a ratio and
// caps (docs/billing.md, "What a program states"): voucher term, face
// bounds, yearly budget, provider approval periods and ratios and caps by
// category of entity; the categories of entities; a voucher's first use;
// what cut a partial subsidy; and the pieces of records billed split at a
// boundary of the rules. Every new column has a default that keeps the
// rows already there billed as they were.
var programTermsMigration = []string{
	`ALTER TABLE programs ADD COLUMN voucher_term_months BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE programs ADD COLUMN voucher_term_from TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE programs ADD COLUMN voucher_min_fen BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE programs ADD COLUMN voucher_max_fen BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE programs ADD COLUMN budget_year_fen BIGINT NOT NULL DEFAULT 0`,
	// 0: the program's own bound.
	`ALTER TABLE program_providers ADD COLUMN approved_from_ms BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE program_providers ADD COLUMN approved_to_ms BIGINT NOT NULL DEFAULT 0`,
	`CREATE TABLE program_categories (
		program_id   TEXT NOT NULL REFERENCES programs(id),
		category     TEXT NOT NULL,
		ratio_bp     BIGINT NOT NULL,
		cap_year_fen BIGINT NOT NULL,
		PRIMARY KEY (program_id, category)
	)`,
	// valid_to_ms 0: open.
	`CREATE TABLE entity_categories (
		entity_id     TEXT NOT NULL REFERENCES entities(id),
		category      TEXT NOT NULL,
		valid_from_ms BIGINT NOT NULL,
		valid_to_ms   BIGINT NOT NULL,
		PRIMARY KEY (entity_id, category, valid_from_ms)
	)`,
	// 0: never used.
	`ALTER TABLE vouchers ADD COLUMN first_use_ms BIGINT NOT NULL DEFAULT 0`,
	// What a program granted all entities in a year: its budget's counter,
	// for programs with a budget.
	`CREATE TABLE program_budgets (
		program_id  TEXT NOT NULL REFERENCES programs(id),
		year        BIGINT NOT NULL,
		granted_fen BIGINT NOT NULL,
		PRIMARY KEY (program_id, year)
	)`,
	`ALTER TABLE charges ADD COLUMN limit_by TEXT NOT NULL DEFAULT ''`,
	// The pieces of a record billed split (two or more); none for a record
	// billed whole.
	`CREATE TABLE charge_pieces (
		record_id    TEXT NOT NULL REFERENCES charges(record_id),
		piece        BIGINT NOT NULL,
		start_ms     BIGINT NOT NULL,
		end_ms       BIGINT NOT NULL,
		gpu_ms       BIGINT NOT NULL,
		rate_card_id TEXT NOT NULL,
		cost_fen     BIGINT NOT NULL,
		subsidy_fen  BIGINT NOT NULL,
		program_id   TEXT NOT NULL,
		note         TEXT NOT NULL,
		limit_by     TEXT NOT NULL,
		PRIMARY KEY (record_id, piece)
	)`,
	`CREATE INDEX charge_pieces_card ON charge_pieces(rate_card_id, end_ms)`,
}
