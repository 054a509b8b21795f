package store

import (
	"context"
	"database/sql"
	"fmt"
)

// insert writes the batch and its records. The unique keys are the last
// line of defence: a record id already stored (the same usage in another
// batch) is refused as an invalid record, never stored twice.
func (s *Store) insert(ctx context.Context, tx *sql.Tx, sub Submission) error {
	b := &sub.Batch
	_, err := s.exec(ctx, tx, `INSERT INTO batches (node_id, first_seq, last_seq, hash, key_id, received_at, envelope)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		b.Node, b.FirstSeq, b.LastSeq, sub.Hash, b.KeyID, sub.Received.UnixMilli(), sub.Envelope)
	if err != nil {
		return fmt.Errorf("store batch %d of node %q: %w", b.FirstSeq, b.Node, err)
	}
	stmt, err := tx.PrepareContext(ctx, s.d.rebind(`INSERT INTO records (
		record_id, node_id, seq, batch_first_seq, provider, tenant, kind, gpu_uuid, parent_uuid, model,
		mig_profile, slice_num, slice_den, window_start_ms, window_end_ms, gpu_ms, utilization_pct,
		energy_mj, attribution, shared_with, split_rule, gap_reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`))
	if err != nil {
		return fmt.Errorf("store records of node %q: %w", b.Node, err)
	}
	defer stmt.Close()
	for i := range b.Records {
		r := &b.Records[i]
		_, err := stmt.ExecContext(ctx,
			r.ID, b.Node, r.Seq, b.FirstSeq, r.Provider, r.Tenant, string(r.Kind), r.GPUUUID, r.ParentUUID, r.Model,
			r.MIGProfile, r.SliceNum, r.SliceDen, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli(), r.GPUMillis,
			r.UtilizationPercent, r.EnergyMillijoules, r.Attribution, r.SharedWith, r.SplitRule, r.GapReason)
		if err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("%w: record seq %d: id %s is already stored", ErrInvalidRecord, r.Seq, r.ID)
			}
			return fmt.Errorf("store record seq %d of node %q: %w", r.Seq, b.Node, err)
		}
	}
	return nil
}
