package store

import (
	"database/sql"
	"fmt"
	"strings"

	"github.com/gpumeter/gpumeter/protocol"
)

// recordChunk is how many records one INSERT writes: 22 parameters each,
// within maxStatementParams. A statement per chunk, not per record: on
// PostgreSQL each is a round trip; a batch of up to 1 000 records (the
// reporter's default) is one statement.
const recordChunk = maxStatementParams / 22

const recordColumns = `record_id, node_id, seq, batch_first_seq, provider, tenant, kind, gpu_uuid, parent_uuid, model,
	mig_profile, slice_num, slice_den, window_start_ms, window_end_ms, gpu_ms, utilization_pct,
	energy_mj, attribution, shared_with, split_rule, gap_reason`

const recordPlaceholders = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// insert queues the writes of the batch and its records (pipeline.go). A
// record id already stored (the same usage in another batch) or repeated
// in the batch is refused as an invalid record, never stored twice. The
// insert itself finds the ids already stored (ON CONFLICT DO NOTHING,
// RETURNING what it wrote), so the check costs no statement of its own;
// it fails the transaction when the queue is sent.
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
	for at := 0; at < len(b.Records); at += recordChunk {
		s.insertRecords(tx, b, b.Records[at:min(at+recordChunk, len(b.Records))])
	}
	return nil
}

// RecordsInsert is the plain INSERT of recs of b into records, with '?'
// placeholders, and its arguments. The store adds its conflict clause;
// the bench's baseline runs it as it is.
func RecordsInsert(b *protocol.Batch, recs []protocol.Record) (string, []any) {
	q := `INSERT INTO records (` + recordColumns + `) VALUES ` +
		strings.Repeat(recordPlaceholders+", ", len(recs)-1) + recordPlaceholders
	args := make([]any, 0, 22*len(recs))
	for i := range recs {
		r := &recs[i]
		args = append(args,
			r.ID, b.Node, r.Seq, b.FirstSeq, r.Provider, r.Tenant, string(r.Kind), r.GPUUUID, r.ParentUUID, r.Model,
			r.MIGProfile, r.SliceNum, r.SliceDen, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli(), r.GPUMillis,
			r.UtilizationPercent, r.EnergyMillijoules, r.Attribution, r.SharedWith, r.SplitRule, r.GapReason)
	}
	return q, args
}

// insertRecords queues the statement that writes recs of b.
func (s *Store) insertRecords(tx *sql.Tx, b *protocol.Batch, recs []protocol.Record) {
	q, args := RecordsInsert(b, recs)
	q += ` ON CONFLICT (record_id) DO NOTHING RETURNING record_id`
	what := fmt.Sprintf("store records seq %d-%d of node %q", recs[0].Seq, recs[len(recs)-1].Seq, b.Node)
	s.queueCheck(tx, what, func(rows resultRows) error {
		written := make(map[string]bool, len(recs))
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			written[id] = true
		}
		for i := range recs {
			if r := &recs[i]; !written[r.ID] {
				return fmt.Errorf("%w: record seq %d: id %s is already stored", ErrInvalidRecord, r.Seq, r.ID)
			}
		}
		return nil
	}, q, args...)
}
