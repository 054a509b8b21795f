package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// migrations is the schema history. Migration i (1-based) is applied once,
// in its own transaction, and recorded in schema_migrations. Never edit a
// released migration: append a new one. Types are portable (BIGINT, TEXT,
// BOOLEAN); {{bytes}} is the dialect's byte string type, {{serial}} its
// database-assigned BIGINT primary key.
var migrations = [][]string{
	1: {
		`CREATE TABLE nodes (
			id        TEXT PRIMARY KEY,
			provider  TEXT NOT NULL,
			forked    BOOLEAN NOT NULL DEFAULT FALSE,
			head_seq  BIGINT NOT NULL DEFAULT 0,
			head_hash TEXT NOT NULL DEFAULT '',
			created   BIGINT NOT NULL
		)`,
		`CREATE TABLE node_keys (
			key_id     TEXT PRIMARY KEY,
			node_id    TEXT NOT NULL REFERENCES nodes(id),
			public_key TEXT NOT NULL UNIQUE,
			created    BIGINT NOT NULL,
			revoked_at BIGINT NULL
		)`,
		`CREATE INDEX node_keys_node ON node_keys(node_id)`,
		// gpu_uuid is the primary key: a GPU belongs to one node only.
		`CREATE TABLE node_gpus (
			gpu_uuid TEXT PRIMARY KEY,
			node_id  TEXT NOT NULL REFERENCES nodes(id)
		)`,
		`CREATE INDEX node_gpus_node ON node_gpus(node_id)`,
		`CREATE TABLE batches (
			node_id     TEXT NOT NULL REFERENCES nodes(id),
			first_seq   BIGINT NOT NULL,
			last_seq    BIGINT NOT NULL,
			hash        TEXT NOT NULL,
			key_id      TEXT NOT NULL REFERENCES node_keys(key_id),
			received_at BIGINT NOT NULL,
			envelope    {{bytes}} NOT NULL,
			PRIMARY KEY (node_id, first_seq)
		)`,
		`CREATE UNIQUE INDEX batches_last ON batches(node_id, last_seq)`,
		`CREATE TABLE records (
			record_id       TEXT PRIMARY KEY,
			node_id         TEXT NOT NULL,
			seq             BIGINT NOT NULL,
			batch_first_seq BIGINT NOT NULL,
			provider        TEXT NOT NULL,
			tenant          TEXT NOT NULL,
			kind            TEXT NOT NULL,
			gpu_uuid        TEXT NOT NULL,
			parent_uuid     TEXT NOT NULL,
			model           TEXT NOT NULL,
			mig_profile     TEXT NOT NULL,
			slice_num       BIGINT NOT NULL,
			slice_den       BIGINT NOT NULL,
			window_start_ms BIGINT NOT NULL,
			window_end_ms   BIGINT NOT NULL,
			gpu_ms          BIGINT NOT NULL,
			utilization_pct BIGINT NOT NULL,
			energy_mj       BIGINT NOT NULL,
			attribution     TEXT NOT NULL,
			shared_with     BIGINT NOT NULL,
			split_rule      TEXT NOT NULL,
			gap_reason      TEXT NOT NULL,
			UNIQUE (node_id, seq),
			FOREIGN KEY (node_id, batch_first_seq) REFERENCES batches(node_id, first_seq)
		)`,
		// Usage queries: by kind and tenant over a period, optionally per node.
		`CREATE INDEX records_usage ON records(kind, tenant, window_start_ms, node_id)`,
		`CREATE INDEX records_node_usage ON records(node_id, kind, window_start_ms)`,
		// One row per (unit, distinct record interval): the sum of gpu_ms
		// stored for it. See the package doc's wall-time rule.
		`CREATE TABLE unit_windows (
			gpu_uuid        TEXT NOT NULL,
			window_start_ms BIGINT NOT NULL,
			window_end_ms   BIGINT NOT NULL,
			node_id         TEXT NOT NULL REFERENCES nodes(id),
			total_ms        BIGINT NOT NULL,
			PRIMARY KEY (gpu_uuid, window_start_ms, window_end_ms)
		)`,
	},
	2: billingMigration,
	3: inventoryMigration,
	4: auditMigration,
	5: registryMigration,
	6: reportedLayoutsMigration,
	7: logMigration,
	8: programTermsMigration,
	9: consoleMigration,
}

// migrate applies the migrations not yet recorded. Processes opening one
// database at once apply each migration once: every step runs under the
// database's write lock (SQLite) or an advisory lock (PostgreSQL, where
// even CREATE TABLE IF NOT EXISTS races), and re-reads the version inside.
func (s *Store) migrate(ctx context.Context) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockMigrations(ctx, tx); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for v := 1; v < len(migrations); v++ {
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			if err := s.lockMigrations(ctx, tx); err != nil {
				return err
			}
			// Re-read inside the lock: another process may have applied
			// it since.
			var n int
			if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range migrations[v] {
				if _, err := s.exec(ctx, tx, strings.NewReplacer("{{bytes}}", s.d.blobType, "{{serial}}", s.d.serialKey).Replace(stmt)); err != nil {
					return fmt.Errorf("statement %.60q: %w", stmt, err)
				}
			}
			_, err := s.exec(ctx, tx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %d: %w", v, err)
		}
	}
	var newest int
	if err := s.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest >= len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", newest, len(migrations)-1)
	}
	return nil
}

// lockMigrations takes the dialect's migration lock for the rest of tx.
func (s *Store) lockMigrations(ctx context.Context, tx *sql.Tx) error {
	if s.d.lockMigrations == "" {
		return nil
	}
	if _, err := s.exec(ctx, tx, s.d.lockMigrations); err != nil {
		return fmt.Errorf("lock migrations: %w", err)
	}
	return nil
}
