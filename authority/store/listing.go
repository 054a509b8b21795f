package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// NodeSummary is a node as `voucher-authority node list` shows it: the
// node with its GPUs, the ids of its keys not revoked, and the end of the
// window of its head record (zero before its first record).
type NodeSummary struct {
	Node
	ActiveKeys    []string
	LastWindowEnd time.Time
}

// Nodes lists every node in id order, read-only. A key revoked at or
// before now is not active.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]NodeSummary, error) {
	rows, err := s.query(ctx, `SELECT id, provider, forked, head_seq, head_hash FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []NodeSummary
	at := map[string]int{}
	err = scanAll(rows, func() error {
		var n NodeSummary
		if err := rows.Scan(&n.ID, &n.Provider, &n.Forked, &n.HeadSeq, &n.HeadHash); err != nil {
			return err
		}
		at[n.ID] = len(out)
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	if rows, err = s.query(ctx, `SELECT node_id, gpu_uuid, model, registered_ms FROM node_gpus ORDER BY node_id, gpu_uuid`); err != nil {
		return nil, fmt.Errorf("list nodes' GPUs: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			node string
			g    GPU
			reg  int64
		)
		if err := rows.Scan(&node, &g.UUID, &g.Model, &reg); err != nil {
			return err
		}
		g.Registered = time.UnixMilli(reg).UTC()
		if i, ok := at[node]; ok {
			out[i].GPUs = append(out[i].GPUs, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes' GPUs: %w", err)
	}
	if rows, err = s.query(ctx, `SELECT node_id, key_id, revoked_at FROM node_keys ORDER BY node_id, created, key_id`); err != nil {
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
		if i, ok := at[node]; ok && (!revoked.Valid || now.Before(time.UnixMilli(revoked.Int64))) {
			out[i].ActiveKeys = append(out[i].ActiveKeys, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes' keys: %w", err)
	}
	// The head record is the node's last: (node_id, seq) is unique and
	// indexed, so this reads one row a node.
	if rows, err = s.query(ctx, `SELECT n.id, r.window_end_ms FROM nodes n
		JOIN records r ON r.node_id = n.id AND r.seq = n.head_seq`); err != nil {
		return nil, fmt.Errorf("list nodes' last windows: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			node string
			end  int64
		)
		if err := rows.Scan(&node, &end); err != nil {
			return err
		}
		if i, ok := at[node]; ok {
			out[i].LastWindowEnd = time.UnixMilli(end).UTC()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes' last windows: %w", err)
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
