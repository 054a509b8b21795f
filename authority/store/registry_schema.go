package store

// registryMigration keeps what the authority needs so that no usage is
// stranded and every operator action leaves a trail (docs/protocol.md,
// "Second signers"; docs/operations.md, "When usage is stuck"). Times are
// Unix ms.
var registryMigration = []string{
	// A GPU's registration ends at retired_ms (node remove-gpu): the
	// node's records after it are refused gpu-not-registered, those
	// before stay valid. NULL: registered.
	`ALTER TABLE node_gpus ADD COLUMN retired_ms BIGINT NULL`,
	// Registrations that ended and whose GPU was then registered to
	// another node (node_gpus holds one row per GPU, its latest): the old
	// node may still deliver records of its time.
	`CREATE TABLE gpu_past_registrations (
		gpu_uuid      TEXT NOT NULL,
		node_id       TEXT NOT NULL REFERENCES nodes(id),
		model         TEXT NOT NULL,
		registered_ms BIGINT NOT NULL,
		retired_ms    BIGINT NOT NULL,
		PRIMARY KEY (gpu_uuid, registered_ms)
	)`,
	`CREATE INDEX gpu_past_registrations_node ON gpu_past_registrations(node_id)`,
	// The instance id of the copy of the agent that sealed each batch
	// ('' from agents that send none).
	`ALTER TABLE batches ADD COLUMN instance TEXT NOT NULL DEFAULT ''`,
	// Every copy of a node the authority heard from: a second one is a
	// clone, refused second-signer and flagged (nodes.forked).
	`CREATE TABLE node_instances (
		node_id          TEXT NOT NULL REFERENCES nodes(id),
		instance         TEXT NOT NULL,
		first_seen_ms    BIGINT NOT NULL,
		last_seen_ms     BIGINT NOT NULL,
		accepted_batches BIGINT NOT NULL,
		refused_batches  BIGINT NOT NULL,
		PRIMARY KEY (node_id, instance)
	)`,
	// The latest window end of the node's stored records, kept at ingest:
	// the head answer's last_window_end without a scan of the records.
	`ALTER TABLE nodes ADD COLUMN last_window_end_ms BIGINT NOT NULL DEFAULT 0`,
	`UPDATE nodes SET last_window_end_ms = COALESCE((SELECT MAX(r.window_end_ms) FROM records r
		WHERE r.node_id = nodes.id AND r.kind <> 'inventory'), 0)`,
	// Every change an operator made to the registry or the review queue,
	// written in the action's own transaction: a failed action leaves
	// none. details is a JSON object.
	`CREATE TABLE operator_actions (
		id      {{serial}},
		at_ms   BIGINT NOT NULL,
		actor   TEXT NOT NULL,
		action  TEXT NOT NULL,
		node_id TEXT NOT NULL,
		details TEXT NOT NULL
	)`,
	`CREATE INDEX operator_actions_node ON operator_actions(node_id, id)`,
}

// reportedLayoutsMigration keeps the layouts a node's inventories report
// for GPUs not registered to it. gpu_layouts may hold only registered
// GPUs, and the inventory record that reported a GPU comes earlier in the
// chain than the usage held until the operator registers it (node
// add-gpu): without these rows that usage would lack a layout for ever.
// Registering the GPU to the node copies the node's rows into gpu_layouts
// and drops them. instances is a JSON object: instance UUID to profile.
var reportedLayoutsMigration = []string{
	`CREATE TABLE reported_layouts (
		node_id     TEXT NOT NULL REFERENCES nodes(id),
		gpu_uuid    TEXT NOT NULL,
		from_ms     BIGINT NOT NULL,
		seq         BIGINT NOT NULL,
		model       TEXT NOT NULL,
		mig_enabled BOOLEAN NOT NULL,
		instances   TEXT NOT NULL,
		PRIMARY KEY (node_id, gpu_uuid, from_ms)
	)`,
}
