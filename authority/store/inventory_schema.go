package store

// inventoryMigration holds the facts the authority checks usage against
// (docs/protocol.md, "Verification order"): each GPU's model and
// registration time, each key's activation, the inventories nodes report
// and the MIG layout history they give, the per-physical-GPU time totals,
// and the review queue of held subsidies. Times are Unix ms.
var inventoryMigration = []string{
	// The model is the authority's model table id (authority/inventory),
	// never a node's word; registered_ms bounds the first window paid.
	`ALTER TABLE node_gpus ADD COLUMN model TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE node_gpus ADD COLUMN registered_ms BIGINT NOT NULL DEFAULT 0`,
	`UPDATE node_gpus SET registered_ms = (SELECT created FROM nodes WHERE nodes.id = node_gpus.node_id)`,
	// The longest record interval stored for the GPU: how far back the
	// GPU-time rule must look for intervals that contain a new one.
	`ALTER TABLE node_gpus ADD COLUMN max_span_ms BIGINT NOT NULL DEFAULT 0`,
	// A key signs for windows from active_from_ms on.
	`ALTER TABLE node_keys ADD COLUMN active_from_ms BIGINT NOT NULL DEFAULT 0`,
	`UPDATE node_keys SET active_from_ms = created`,
	// Every inventory a node reported, by the seq of its record.
	`CREATE TABLE node_inventories (
		node_id         TEXT NOT NULL REFERENCES nodes(id),
		seq             BIGINT NOT NULL,
		observed_ms     BIGINT NOT NULL,
		window_ms       BIGINT NOT NULL,
		merge_window_ms BIGINT NOT NULL,
		record_id       TEXT NOT NULL,
		PRIMARY KEY (node_id, seq)
	)`,
	// A GPU's layout history: one row from each instant its layout (MIG
	// mode and instances) changed; in force until the next row's from_ms.
	`CREATE TABLE gpu_layouts (
		gpu_uuid    TEXT NOT NULL REFERENCES node_gpus(gpu_uuid),
		from_ms     BIGINT NOT NULL,
		node_id     TEXT NOT NULL,
		seq         BIGINT NOT NULL,
		mig_enabled BOOLEAN NOT NULL,
		PRIMARY KEY (gpu_uuid, from_ms)
	)`,
	`CREATE TABLE gpu_layout_instances (
		gpu_uuid      TEXT NOT NULL,
		from_ms       BIGINT NOT NULL,
		instance_uuid TEXT NOT NULL,
		profile       TEXT NOT NULL,
		PRIMARY KEY (gpu_uuid, from_ms, instance_uuid),
		FOREIGN KEY (gpu_uuid, from_ms) REFERENCES gpu_layouts(gpu_uuid, from_ms)
	)`,
	// Per physical GPU and distinct record interval: the slice-weighted
	// GPU time of all its units' records, in ms × SliceScale (so 1/7 of a
	// millisecond is exact). See the package doc's GPU-time rule.
	`CREATE TABLE gpu_windows (
		gpu_uuid        TEXT NOT NULL,
		window_start_ms BIGINT NOT NULL,
		window_end_ms   BIGINT NOT NULL,
		node_id         TEXT NOT NULL,
		total_scaled    BIGINT NOT NULL,
		PRIMARY KEY (gpu_uuid, window_start_ms, window_end_ms)
	)`,
	// review: '' paid as billed, 'held' (waits in reviews), 'approved',
	// 'rejected' (its grants were returned to the vouchers).
	`ALTER TABLE charges ADD COLUMN review TEXT NOT NULL DEFAULT ''`,
	// The review queue: usage whose subsidy is held because its energy or
	// utilization says the GPU did no work (docs/billing.md).
	`CREATE TABLE reviews (
		record_id       TEXT PRIMARY KEY REFERENCES charges(record_id),
		node_id         TEXT NOT NULL,
		provider        TEXT NOT NULL,
		tenant          TEXT NOT NULL,
		entity_id       TEXT NOT NULL,
		window_start_ms BIGINT NOT NULL,
		reason          TEXT NOT NULL,
		held_fen        BIGINT NOT NULL,
		status          TEXT NOT NULL,
		created         BIGINT NOT NULL,
		decided_ms      BIGINT NULL,
		decided_by      TEXT NOT NULL DEFAULT '',
		note            TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX reviews_status ON reviews(status, created)`,
}
