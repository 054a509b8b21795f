package store

// billingMigration is the billing schema (docs/billing.md): who holds
// vouchers, the programs and rate cards, and what ingest priced and
// subsidized. Times are Unix ms; money is integer fen; ratios are basis
// points (10000 = 100%).
var billingMigration = []string{
	// A legal entity: a voucher holder.
	`CREATE TABLE entities (
		id      TEXT PRIMARY KEY,
		name    TEXT NOT NULL,
		created BIGINT NOT NULL
	)`,
	// Providers the entity is a related party of: no program subsidizes
	// the entity's usage there.
	`CREATE TABLE entity_related_providers (
		entity_id TEXT NOT NULL REFERENCES entities(id),
		provider  TEXT NOT NULL,
		PRIMARY KEY (entity_id, provider)
	)`,
	// Which entity a provider's tenant label is.
	`CREATE TABLE tenant_entities (
		provider  TEXT NOT NULL,
		tenant    TEXT NOT NULL,
		entity_id TEXT NOT NULL REFERENCES entities(id),
		PRIMARY KEY (provider, tenant)
	)`,
	`CREATE TABLE programs (
		id               TEXT PRIMARY KEY,
		issuer           TEXT NOT NULL,
		name             TEXT NOT NULL,
		ratio_bp         BIGINT NOT NULL,
		cap_year_fen     BIGINT NOT NULL,
		cap_lifetime_fen BIGINT NOT NULL,
		valid_from_ms    BIGINT NOT NULL,
		valid_to_ms      BIGINT NOT NULL,
		rounding         TEXT NOT NULL,
		settlement       TEXT NOT NULL,
		created          BIGINT NOT NULL
	)`,
	// Ratio by GPU model (a model class is a list of models).
	`CREATE TABLE program_ratios (
		program_id TEXT NOT NULL REFERENCES programs(id),
		model      TEXT NOT NULL,
		ratio_bp   BIGINT NOT NULL,
		PRIMARY KEY (program_id, model)
	)`,
	`CREATE TABLE program_providers (
		program_id TEXT NOT NULL REFERENCES programs(id),
		provider   TEXT NOT NULL,
		PRIMARY KEY (program_id, provider)
	)`,
	// No rows: every model is eligible.
	`CREATE TABLE program_models (
		program_id TEXT NOT NULL REFERENCES programs(id),
		model      TEXT NOT NULL,
		PRIMARY KEY (program_id, model)
	)`,
	`CREATE TABLE vouchers (
		id           TEXT PRIMARY KEY,
		program_id   TEXT NOT NULL REFERENCES programs(id),
		entity_id    TEXT NOT NULL REFERENCES entities(id),
		face_fen     BIGINT NOT NULL,
		balance_fen  BIGINT NOT NULL,
		issued_ms    BIGINT NOT NULL,
		expires_ms   BIGINT NOT NULL,
		status       TEXT NOT NULL,
		created      BIGINT NOT NULL,
		CHECK (balance_fen >= 0 AND balance_fen <= face_fen)
	)`,
	`CREATE INDEX vouchers_entity ON vouchers(entity_id, expires_ms)`,
	// valid_to_ms is exclusive; an open-ended card has MaxInt64.
	`CREATE TABLE rate_cards (
		id                 TEXT PRIMARY KEY,
		provider           TEXT NOT NULL,
		model              TEXT NOT NULL,
		mig_profile        TEXT NOT NULL,
		price_fen_per_hour BIGINT NOT NULL,
		valid_from_ms      BIGINT NOT NULL,
		valid_to_ms        BIGINT NOT NULL,
		created            BIGINT NOT NULL
	)`,
	`CREATE INDEX rate_cards_lookup ON rate_cards(provider, model, mig_profile, valid_from_ms)`,
	// One row per (provider, model, profile) that has cards: adding or
	// ending a card locks it first, so two operators cannot add
	// overlapping cards at once (the overlap check reads, then inserts).
	`CREATE TABLE rate_card_keys (
		provider    TEXT NOT NULL,
		model       TEXT NOT NULL,
		mig_profile TEXT NOT NULL,
		PRIMARY KEY (provider, model, mig_profile)
	)`,
	// One row per usage record: its price. Idle and gap records have none.
	// entity_id is '' for a tenant no entity was mapped to at ingest;
	// rate_card_id is '' (and cost 0) for usage no card priced.
	`CREATE TABLE charges (
		record_id       TEXT PRIMARY KEY REFERENCES records(record_id),
		provider        TEXT NOT NULL,
		tenant          TEXT NOT NULL,
		entity_id       TEXT NOT NULL,
		window_start_ms BIGINT NOT NULL,
		rate_card_id    TEXT NOT NULL,
		cost_fen        BIGINT NOT NULL,
		subsidy_fen     BIGINT NOT NULL,
		program_id      TEXT NOT NULL,
		note            TEXT NOT NULL,
		CHECK (cost_fen >= 0 AND subsidy_fen >= 0 AND subsidy_fen <= cost_fen)
	)`,
	`CREATE INDEX charges_entity ON charges(entity_id, window_start_ms)`,
	`CREATE INDEX charges_provider ON charges(provider, window_start_ms)`,
	// What each voucher paid toward a record.
	`CREATE TABLE grants (
		record_id  TEXT NOT NULL REFERENCES charges(record_id),
		voucher_id TEXT NOT NULL REFERENCES vouchers(id),
		amount_fen BIGINT NOT NULL CHECK (amount_fen > 0),
		PRIMARY KEY (record_id, voucher_id)
	)`,
	`CREATE INDEX grants_voucher ON grants(voucher_id)`,
	// Rounding carries (docs/billing.md): the sub-fen remainder of a
	// running cost, per (provider, tenant, card, slice, month), in
	// 1/(3 600 000 × slice_den) fen. slice_den is 1 but for MIG records
	// priced by the whole-GPU card (billing.CostKey).
	`CREATE TABLE cost_carries (
		provider     TEXT NOT NULL,
		tenant       TEXT NOT NULL,
		rate_card_id TEXT NOT NULL,
		slice_den    BIGINT NOT NULL,
		period       TEXT NOT NULL,
		remainder    BIGINT NOT NULL,
		PRIMARY KEY (provider, tenant, rate_card_id, slice_den, period)
	)`,
	// Per (program, entity, year): the entitlement's remainder and what
	// was granted (the yearly cap; the lifetime cap sums the years).
	`CREATE TABLE subsidy_carries (
		program_id  TEXT NOT NULL REFERENCES programs(id),
		entity_id   TEXT NOT NULL REFERENCES entities(id),
		year        BIGINT NOT NULL,
		remainder   BIGINT NOT NULL,
		granted_fen BIGINT NOT NULL,
		PRIMARY KEY (program_id, entity_id, year)
	)`,
}
