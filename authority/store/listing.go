package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// NodeSummary is a node as `voucher-authority node list` shows it: the
// node with its GPUs (those whose registration ended included, with
// Retired), the copies of its agent the authority heard from, and the ids
// of its keys not revoked.
type NodeSummary struct {
	Node
	ActiveKeys []string
}

// Nodes lists every node in id order. A key revoked at or before now is
// not active.
//
// It reads a fixed number of queries whatever the number of nodes (not
// one per node), in one read-only transaction, so the nodes, their GPUs,
// instances and keys are one snapshot: a node registered or a GPU moved
// meanwhile is listed wholly before or wholly after.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]NodeSummary, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	query := func(q string) (*sql.Rows, error) { return tx.QueryContext(ctx, s.d.rebind(q)) }

	rows, err := query(`SELECT id, provider, forked, head_seq, head_hash, last_window_end_ms FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []NodeSummary
	at := map[string]int{}
	err = scanAll(rows, func() error {
		var (
			n    NodeSummary
			last int64
		)
		if err := rows.Scan(&n.ID, &n.Provider, &n.Forked, &n.HeadSeq, &n.HeadHash, &last); err != nil {
			return err
		}
		if last > 0 {
			n.LastWindowEnd = msTime(last)
		}
		at[n.ID] = len(out)
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	if rows, err = query(`SELECT node_id, gpu_uuid, model, registered_ms, retired_ms FROM node_gpus ORDER BY node_id, gpu_uuid`); err != nil {
		return nil, fmt.Errorf("list nodes' GPUs: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			node    string
			g       GPU
			reg     int64
			retired sql.NullInt64
		)
		if err := rows.Scan(&node, &g.UUID, &g.Model, &reg, &retired); err != nil {
			return err
		}
		g.Registered = msTime(reg)
		if retired.Valid {
			g.Retired = msTime(retired.Int64)
		}
		if i, ok := at[node]; ok {
			out[i].GPUs = append(out[i].GPUs, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes' GPUs: %w", err)
	}
	if rows, err = query(`SELECT node_id, instance, first_seen_ms, last_seen_ms, accepted_batches, refused_batches
		FROM node_instances ORDER BY node_id, first_seen_ms, instance`); err != nil {
		return nil, fmt.Errorf("list nodes' instances: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			node        string
			in          Instance
			first, last int64
		)
		if err := rows.Scan(&node, &in.ID, &first, &last, &in.Accepted, &in.Refused); err != nil {
			return err
		}
		in.FirstSeen, in.LastSeen = msTime(first), msTime(last)
		if i, ok := at[node]; ok {
			out[i].Instances = append(out[i].Instances, in)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes' instances: %w", err)
	}
	if rows, err = query(`SELECT node_id, key_id, revoked_at FROM node_keys ORDER BY node_id, created, key_id`); err != nil {
		return nil, fmt.Errorf("list nodes' keys: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			node, id string
			revoked  sql.NullInt64
		)
		if err := rows.Scan(&node, &id, &revoked); err != nil {
			return err
		}
		if i, ok := at[node]; ok && (!revoked.Valid || now.Before(msTime(revoked.Int64))) {
			out[i].ActiveKeys = append(out[i].ActiveKeys, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes' keys: %w", err)
	}
	return out, nil
}

// TenantMapping is one line of the tenant map: the provider's tenant
// label and the entity it is.
type TenantMapping struct {
	Provider string `json:"provider"`
	Tenant   string `json:"tenant"`
	Entity   string `json:"entity"`
}

// TenantMappings lists the tenant map (of one provider when provider is
// not empty), in provider and tenant order.
func (s *Store) TenantMappings(ctx context.Context, provider string) ([]TenantMapping, error) {
	q, args := `SELECT provider, tenant, entity_id FROM tenant_entities ORDER BY provider, tenant`, []any{}
	if provider != "" {
		q, args = `SELECT provider, tenant, entity_id FROM tenant_entities WHERE provider = ? ORDER BY provider, tenant`, []any{provider}
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tenant map: %w", err)
	}
	var out []TenantMapping
	err = scanAll(rows, func() error {
		var m TenantMapping
		if err := rows.Scan(&m.Provider, &m.Tenant, &m.Entity); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tenant map: %w", err)
	}
	return out, nil
}

// scanAll calls scan for each row, then closes rows.
func scanAll(rows *sql.Rows, scan func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(); err != nil {
			return err
		}
	}
	return rows.Err()
}
