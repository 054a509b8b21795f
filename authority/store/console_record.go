package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// ConsoleRecord is one usage record as the console's record page shows
// it: the record, its charge (if billed), what each voucher paid toward
// it, and the signed batch it came in, with that batch's leaf in the
// verifiable log when the log holds it.
type ConsoleRecord struct {
	ID, Node, Provider, Tenant, Kind, GPU, Model string
	Seq                                          int64
	WindowStart, WindowEnd                       time.Time
	GPUMillis                                    int64

	Billed          bool // a charge exists; the fields below are set
	Entity, Program string
	Cost, Subsidy   billing.Fen
	Review          string
	Grants          []ConsoleGrant
	BatchFirst      int64
	BatchLast       int64
	BatchHash       string
	BatchReceived   time.Time
	LeafIndex       int64
	InLog           bool // LeafIndex is set
}

// ConsoleGrant is what one voucher paid toward a record.
type ConsoleGrant struct {
	Voucher string
	Amount  billing.Fen
}

// ConsoleRecordByID reads record id with its charge, grants, batch and
// log leaf; ErrBillingNotFound if there is no such record.
func (s *Store) ConsoleRecordByID(ctx context.Context, id string) (ConsoleRecord, error) {
	var (
		r                    ConsoleRecord
		ws, we, recv         int64
		entity, program, rev sql.NullString
		cost, sub, leaf      sql.NullInt64
	)
	err := s.queryRow(ctx, `SELECT r.record_id, r.node_id, r.seq, r.provider, r.tenant, r.kind, r.gpu_uuid, r.model,
			r.window_start_ms, r.window_end_ms, r.gpu_ms, b.first_seq, b.last_seq, b.hash, b.received_at,
			c.entity_id, c.program_id, c.cost_fen, c.subsidy_fen, c.review, lb.leaf_idx
		FROM records r
		JOIN batches b ON b.node_id = r.node_id AND b.first_seq = r.batch_first_seq
		LEFT JOIN charges c ON c.record_id = r.record_id
		LEFT JOIN log_batches lb ON lb.node_id = b.node_id AND lb.first_seq = b.first_seq
		WHERE r.record_id = ?`, id).Scan(&r.ID, &r.Node, &r.Seq, &r.Provider, &r.Tenant, &r.Kind, &r.GPU, &r.Model,
		&ws, &we, &r.GPUMillis, &r.BatchFirst, &r.BatchLast, &r.BatchHash, &recv,
		&entity, &program, &cost, &sub, &rev, &leaf)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("record %q: %w", id, ErrBillingNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("record %q: %w", id, err)
	}
	r.WindowStart, r.WindowEnd, r.BatchReceived = msTime(ws), msTime(we), msTime(recv)
	r.LeafIndex, r.InLog = leaf.Int64, leaf.Valid
	if r.Billed = entity.Valid; r.Billed {
		r.Entity, r.Program, r.Review = entity.String, program.String, rev.String
		r.Cost, r.Subsidy = billing.Fen(cost.Int64), billing.Fen(sub.Int64)
	}
	rows, err := s.query(ctx, `SELECT voucher_id, amount_fen FROM grants WHERE record_id = ? ORDER BY voucher_id`, id)
	if err != nil {
		return r, fmt.Errorf("record %q grants: %w", id, err)
	}
	err = scanAll(rows, func() error {
		var g ConsoleGrant
		if err := rows.Scan(&g.Voucher, &g.Amount); err != nil {
			return err
		}
		r.Grants = append(r.Grants, g)
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("record %q grants: %w", id, err)
	}
	return r, nil
}
