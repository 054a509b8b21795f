package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// ErrNotFlagged: node unfork of a node that is not flagged.
var ErrNotFlagged = errors.New("node is not flagged")

// reRegisterGPU registers g, whose registration to owner (model, from reg)
// ended at retired, to node from g.Registered on, which may not be before
// retired. The ended registration is kept in gpu_past_registrations, so
// owner's records of its time stay valid.
func (s *Store) reRegisterGPU(ctx context.Context, tx *sql.Tx, node string, g GPU, owner, model string, reg, retired int64) error {
	if g.Registered.UnixMilli() < retired {
		return fmt.Errorf("%w: registered to node %q until %s; register it from then on", ErrInvalidRegistration,
			owner, msTime(retired).Format(time.RFC3339Nano))
	}
	if _, err := s.exec(ctx, tx, `INSERT INTO gpu_past_registrations (gpu_uuid, node_id, model, registered_ms, retired_ms) VALUES (?, ?, ?, ?, ?)`,
		g.UUID, owner, model, reg, retired); err != nil {
		return fmt.Errorf("keep its registration to node %q: %w", owner, err)
	}
	if _, err := s.exec(ctx, tx, `UPDATE node_gpus SET node_id = ?, model = ?, registered_ms = ?, retired_ms = NULL WHERE gpu_uuid = ?`,
		node, g.Model, g.Registered.UnixMilli(), g.UUID); err != nil {
		return fmt.Errorf("register it to node %q: %w", node, err)
	}
	return nil
}

// RemoveGPU ends the registration of GPU uuid to node at at (zero: now;
// never after now, nor before the GPU was registered): the node's records
// whose window ends after at are refused gpu-not-registered from then on,
// those before stay valid, and the GPU may be registered to another node
// (AddGPUs) from at on. at may not cut usage already stored: the latest
// stored window end of the GPU's records on the node bounds it.
func (s *Store) RemoveGPU(ctx context.Context, node, uuid string, at, now time.Time) error {
	u, err := protocol.CanonicalGPUUUID(uuid)
	if err != nil {
		return fmt.Errorf("remove GPU from node %q: %w: %v", node, ErrInvalidRegistration, err)
	}
	at, err = sinceOf(at, now)
	if err != nil {
		return fmt.Errorf("remove GPU %s from node %q: %w", u, node, err)
	}
	what := fmt.Sprintf("remove GPU %s from node %q", u, node)
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		// The node's lock first, as an ingest takes it: a batch of the
		// node is judged wholly before the removal or wholly after.
		if err := s.lockNode(ctx, tx, node); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		var (
			owner   string
			reg     int64
			retired sql.NullInt64
		)
		err := s.queryRowTx(ctx, tx, `SELECT node_id, registered_ms, retired_ms FROM node_gpus WHERE gpu_uuid = ?`+s.d.forUpdate, u).
			Scan(&owner, &reg, &retired)
		switch {
		case errors.Is(err, sql.ErrNoRows) || err == nil && owner != node:
			return fmt.Errorf("%s: %w: it is not registered to the node", what, ErrInvalidRegistration)
		case err != nil:
			return fmt.Errorf("%s: %w", what, err)
		case retired.Valid:
			return fmt.Errorf("%s: %w: its registration already ended at %s", what, ErrInvalidRegistration,
				msTime(retired.Int64).Format(time.RFC3339Nano))
		case at.UnixMilli() < reg:
			return fmt.Errorf("%s: %w: %s is before its registration (%s)", what, ErrInvalidRegistration,
				at.UTC().Format(time.RFC3339Nano), msTime(reg).Format(time.RFC3339Nano))
		}
		var last int64
		if err := s.queryRowTx(ctx, tx, `SELECT COALESCE(MAX(window_end_ms), 0) FROM records WHERE node_id = ? AND parent_uuid = ?`,
			node, u).Scan(&last); err != nil {
			return fmt.Errorf("%s: read its stored usage: %w", what, err)
		}
		if last > at.UnixMilli() {
			return fmt.Errorf("%s: %w: the node's records of it are stored until %s; remove it from then on", what,
				ErrInvalidRegistration, msTime(last).Format(time.RFC3339Nano))
		}
		if _, err := s.exec(ctx, tx, `UPDATE node_gpus SET retired_ms = ? WHERE gpu_uuid = ?`, at.UnixMilli(), u); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return s.recordAction(ctx, tx, ActionRemoveGPU, node, map[string]any{"gpu": u, "retired": at.UTC()}, now)
	})
}

// lockNode checks that node is registered and locks its row (on
// PostgreSQL) for the rest of tx.
func (s *Store) lockNode(ctx context.Context, tx *sql.Tx, node string) error {
	var id string
	err := s.queryRowTx(ctx, tx, `SELECT id FROM nodes WHERE id = ?`+s.d.forUpdate, node).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNodeNotFound
	}
	return err
}

// Unfork clears the node's flag (set when a second copy of it signed),
// with the operator's reason, which the audit trail keeps with the
// instances the authority heard from. A copy that signs again flags the
// node again.
func (s *Store) Unfork(ctx context.Context, node, reason string, now time.Time) error {
	what := fmt.Sprintf("unfork node %q", node)
	if err := checkReason(reason); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var forked bool
		err := s.queryRowTx(ctx, tx, `SELECT forked FROM nodes WHERE id = ?`+s.d.forUpdate, node).Scan(&forked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%s: %w", what, ErrNodeNotFound)
		case err != nil:
			return fmt.Errorf("%s: %w", what, err)
		case !forked:
			return fmt.Errorf("%s: %w", what, ErrNotFlagged)
		}
		ins, err := s.instances(ctx, tx, node)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if _, err := s.exec(ctx, tx, `UPDATE nodes SET forked = ? WHERE id = ?`, false, node); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return s.recordAction(ctx, tx, ActionUnfork, node, map[string]any{"reason": reason, "instances": ins}, now)
	})
}

// NodeInstances lists the copies of node's agent the authority heard from,
// the first heard first.
func (s *Store) NodeInstances(ctx context.Context, node string) ([]Instance, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read instances of node %q: %w", node, err)
	}
	defer func() { _ = tx.Rollback() }()
	ins, err := s.instances(ctx, tx, node)
	if err != nil {
		return nil, fmt.Errorf("read instances of node %q: %w", node, err)
	}
	return ins, nil
}

func (s *Store) instances(ctx context.Context, tx *sql.Tx, node string) ([]Instance, error) {
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT instance, first_seen_ms, last_seen_ms, accepted_batches, refused_batches
		FROM node_instances WHERE node_id = ? ORDER BY first_seen_ms, instance`), node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Instance{}
	for rows.Next() {
		var (
			in          Instance
			first, last int64
		)
		if err := rows.Scan(&in.ID, &first, &last, &in.Accepted, &in.Refused); err != nil {
			return nil, err
		}
		in.FirstSeen, in.LastSeen = msTime(first), msTime(last)
		out = append(out, in)
	}
	return out, rows.Err()
}

// noteInstance counts a batch of node's instance as accepted or refused,
// at now.
func (s *Store) noteInstance(tx *sql.Tx, node, instance string, now time.Time, accepted bool) {
	acc, ref := 1, 0
	if !accepted {
		acc, ref = 0, 1
	}
	s.queue(tx, fmt.Sprintf("note instance %q of node %q", instance, node),
		`INSERT INTO node_instances (node_id, instance, first_seen_ms, last_seen_ms, accepted_batches, refused_batches)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (node_id, instance) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
			accepted_batches = node_instances.accepted_batches + excluded.accepted_batches,
			refused_batches = node_instances.refused_batches + excluded.refused_batches`,
		node, instance, now.UnixMilli(), now.UnixMilli(), acc, ref)
}
