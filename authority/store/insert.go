package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/gpumeter/gpumeter/protocol"
)

const recordColumns = `record_id, node_id, seq, batch_first_seq, provider, tenant, kind, gpu_uuid, parent_uuid, model,
	mig_profile, slice_num, slice_den, window_start_ms, window_end_ms, gpu_ms, utilization_pct,
	energy_mj, attribution, shared_with, split_rule, gap_reason`

// recordWidth is the values of one records row (recordColumns).
const recordWidth = 22

const recordPlaceholders = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// insert queues the writes of the batch and its records (pipeline.go):
// the records as plain rows (a COPY on PostgreSQL for a large batch), no
// conflict clause and nothing read back. A record id repeated in the
// batch is refused here; one already stored (the same usage in another
// batch) fails the insert on the primary key when the queue is sent, the
// transaction rolls back, and Ingest names the record (storedRecords):
// never stored twice, and the check costs the accepted batch nothing.
func (s *Store) insert(tx *sql.Tx, sub Submission) error {
	b := &sub.Batch
	seqOf := make(map[string]uint64, len(b.Records))
	for i := range b.Records {
		r := &b.Records[i]
		if prev, ok := seqOf[r.ID]; ok {
			return fmt.Errorf("%w: record seq %d: id %s repeats record seq %d", ErrInvalidRecord, r.Seq, r.ID, prev)
		}
		seqOf[r.ID] = r.Seq
	}
	s.queue(tx, fmt.Sprintf("store batch %d of node %q", b.FirstSeq, b.Node),
		`INSERT INTO batches (node_id, first_seq, last_seq, hash, key_id, received_at, envelope, instance)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		b.Node, b.FirstSeq, b.LastSeq, sub.Hash, b.KeyID, sub.Received.UnixMilli(), sub.Envelope, b.Instance)
	// One backing array for every row's values.
	vals := make([]any, 0, recordWidth*len(b.Records))
	rows := make([][]any, len(b.Records))
	for i := range b.Records {
		at := len(vals)
		vals = appendRecord(vals, b, &b.Records[i])
		rows[i] = vals[at:len(vals):len(vals)]
	}
	what := fmt.Sprintf("store records seq %d-%d of node %q", b.FirstSeq, b.LastSeq, b.Node)
	s.queueRows(tx, what, "records", recordColumns, rows, func(err error) error {
		if s.d.isUnique(err) {
			return &storedRecordsError{batch: b, err: fmt.Errorf("%s: %w", what, err)}
		}
		return fmt.Errorf("%s: %w", what, err)
	})
	return nil
}

// appendRecord appends the records row of r of b to vals, in
// recordColumns' order.
func appendRecord(vals []any, b *protocol.Batch, r *protocol.Record) []any {
	return append(vals, r.ID, b.Node, r.Seq, b.FirstSeq, r.Provider, r.Tenant, string(r.Kind), r.GPUUUID, r.ParentUUID, r.Model,
		r.MIGProfile, r.SliceNum, r.SliceDen, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli(), r.GPUMillis,
		r.UtilizationPercent, r.EnergyMillijoules, r.Attribution, r.SharedWith, r.SplitRule, r.GapReason)
}

// RecordsInsert is the plain INSERT of recs of b into records, with '?'
// placeholders, and its arguments: what the bench's baseline runs.
func RecordsInsert(b *protocol.Batch, recs []protocol.Record) (string, []any) {
	q := `INSERT INTO records (` + recordColumns + `) VALUES ` +
		strings.Repeat(recordPlaceholders+", ", len(recs)-1) + recordPlaceholders
	args := make([]any, 0, recordWidth*len(recs))
	for i := range recs {
		args = appendRecord(args, b, &recs[i])
	}
	return q, args
}

// storedRecordsError is a batch's records insert refused on a unique key:
// some record of the batch is already stored.
type storedRecordsError struct {
	batch *protocol.Batch
	err   error
}

func (e *storedRecordsError) Error() string { return e.err.Error() }
func (e *storedRecordsError) Unwrap() error { return e.err }

// storedRecords names the first record of e's batch (in batch order)
// whose id is stored, once the refused transaction has rolled back: the
// database's error says only which key. It reads the committed rows, where
// the conflicting one is (PostgreSQL reports a unique violation only
// against a row that committed).
func (s *Store) storedRecords(ctx context.Context, e *storedRecordsError) error {
	b := e.batch
	stored := map[string]bool{}
	for at := 0; at < len(b.Records); at += lookupChunk {
		recs := b.Records[at:min(at+lookupChunk, len(b.Records))]
		args := make([]any, len(recs))
		for i := range recs {
			args[i] = recs[i].ID
		}
		rows, err := s.query(ctx, `SELECT record_id FROM records WHERE record_id IN `+inList(len(recs)), args...)
		if err != nil {
			return errors.Join(e.err, fmt.Errorf("look up the stored record: %w", err))
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				_ = rows.Close()
				return errors.Join(e.err, fmt.Errorf("look up the stored record: %w", err))
			}
			stored[id] = true
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return errors.Join(e.err, fmt.Errorf("look up the stored record: %w", err))
		}
	}
	for i := range b.Records {
		if r := &b.Records[i]; stored[r.ID] {
			return fmt.Errorf("%w: record seq %d: id %s is already stored", ErrInvalidRecord, r.Seq, r.ID)
		}
	}
	return fmt.Errorf("%w: %w", ErrInvalidRecord, e.err)
}
