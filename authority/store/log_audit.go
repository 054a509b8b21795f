package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// The offline audit's reads (authority/audit): every row of the tables it
// recomputes, each column as text, and the proofs an export carries. They
// only read; an auditor runs them with a read-only database role.

// AuditRow is one row of an audited table: column name to value as text
// (integers in decimal, byte columns in lower-case hex, NULL as "").
type AuditRow map[string]string

// auditTables are the tables an audit may read and their columns; the
// first columns up to keyCols form the row's key.
var auditTables = map[string]struct {
	cols    []string
	keyCols int
}{
	"batches":         {[]string{"node_id", "first_seq", "last_seq", "hash", "key_id", "received_at", "envelope"}, 2},
	"records":         {strings.Split(strings.Join(strings.Fields(recordColumns), ""), ","), 1},
	"charges":         {[]string{"record_id", "provider", "tenant", "entity_id", "window_start_ms", "rate_card_id", "cost_fen", "subsidy_fen", "program_id", "note", "review"}, 1},
	"grants":          {[]string{"record_id", "voucher_id", "amount_fen"}, 2},
	"vouchers":        {[]string{"id", "program_id", "entity_id", "face_fen", "balance_fen", "issued_ms", "expires_ms", "status", "created"}, 1},
	"cost_carries":    {[]string{"provider", "tenant", "rate_card_id", "slice_den", "period", "remainder"}, 5},
	"subsidy_carries": {[]string{"program_id", "entity_id", "year", "remainder", "granted_fen"}, 3},
	"log_state":       {[]string{"id", "size", "verifier_key", "started"}, 1},
	"log_leaves":      {[]string{"idx", "kind", "data", "hash", "created"}, 1},
	"log_nodes":       {[]string{"level", "idx", "hash"}, 2},
	"log_batches":     {[]string{"node_id", "first_seq", "leaf_idx"}, 2},
	"log_checkpoints": {[]string{"size", "note", "created"}, 1},
}

// AuditKey is how an audit names a row of table: its key columns as
// "col=value" joined by ", " (e.g. "node_id=n1, first_seq=1").
func AuditKey(table string, r AuditRow) string {
	t := auditTables[table]
	parts := make([]string, t.keyCols)
	for i, c := range t.cols[:t.keyCols] {
		parts[i] = c + "=" + r[c]
	}
	return strings.Join(parts, ", ")
}

// AuditRows reads every row of table (one of the audited tables), ordered
// by its key.
func (s *Store) AuditRows(ctx context.Context, table string) ([]AuditRow, error) {
	t, ok := auditTables[table]
	if !ok {
		return nil, fmt.Errorf("audit: table %q is not one the audit reads", table)
	}
	rows, err := s.query(ctx, `SELECT `+strings.Join(t.cols, ", ")+` FROM `+table+
		` ORDER BY `+strings.Join(t.cols[:t.keyCols], ", "))
	if err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", table, err)
	}
	defer rows.Close()
	var out []AuditRow
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("audit: read %s: %w", table, err)
		}
		r := make(AuditRow, len(t.cols))
		for i, c := range t.cols {
			r[c] = auditText(vals[i])
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", table, err)
	}
	return out, nil
}

// auditText is a scanned value as text, the same on both engines.
func auditText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case int64:
		return strconv.FormatInt(x, 10)
	case []byte:
		return hex.EncodeToString(x)
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// RecordLeaf is where a usage record's batch is in the log.
type RecordLeaf struct {
	Node               string
	FirstSeq, LastSeq  uint64
	LeafIndex          uint64
	WindowStartMs, Seq int64
}

// RecordLeaves finds the batch leaf of each record id; a record whose
// batch has no leaf (stored before the log started) is absent.
func (s *Store) RecordLeaves(ctx context.Context, ids []string) (map[string]RecordLeaf, error) {
	out := make(map[string]RecordLeaf, len(ids))
	const chunk = 500
	for at := 0; at < len(ids); at += chunk {
		part := ids[at:min(at+chunk, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		rows, err := s.query(ctx, `SELECT r.record_id, b.node_id, b.first_seq, b.last_seq, lb.leaf_idx
			FROM records r
			JOIN batches b ON b.node_id = r.node_id AND b.first_seq = r.batch_first_seq
			JOIN log_batches lb ON lb.node_id = b.node_id AND lb.first_seq = b.first_seq
			WHERE r.record_id IN (?`+strings.Repeat(", ?", len(part)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("find the log leaves of records: %w", err)
		}
		for rows.Next() {
			var (
				id string
				l  RecordLeaf
			)
			if err := rows.Scan(&id, &l.Node, &l.FirstSeq, &l.LastSeq, &l.LeafIndex); err != nil {
				rows.Close()
				return nil, fmt.Errorf("find the log leaves of records: %w", err)
			}
			out[id] = l
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("find the log leaves of records: %w", err)
		}
	}
	return out, nil
}

// VoucherLeavesOf lists the voucher leaves naming record (its charges or
// holds, and a decision's release or return), by index.
func (s *Store) VoucherLeavesOf(ctx context.Context, record string) ([]LogLeaf, error) {
	// Leaf data is text; the record line is "record ID\n" (log_voucher.go).
	like := `CAST(data AS TEXT) LIKE ?`
	if s.d.name == DriverPostgres {
		like = `convert_from(data, 'UTF8') LIKE ?`
	}
	rows, err := s.query(ctx, `SELECT idx, kind, data, hash FROM log_leaves WHERE kind = ? AND `+like+` ORDER BY idx`,
		"gpumeter-voucher/v1", "%\nrecord "+record+"\n%")
	if err != nil {
		return nil, fmt.Errorf("voucher leaves of record %s: %w", record, err)
	}
	defer rows.Close()
	var out []LogLeaf
	for rows.Next() {
		var l LogLeaf
		if err := rows.Scan(&l.Index, &l.Kind, &l.Data, &l.Hash); err != nil {
			return nil, fmt.Errorf("voucher leaves of record %s: %w", record, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// AuditColumns are the columns AuditRows reads of table, key first.
func AuditColumns(table string) []string { return auditTables[table].cols }
