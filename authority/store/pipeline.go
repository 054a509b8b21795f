package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// An ingest's writes whose results it needs only to check (the records,
// windows, charges, head, log rows) are queued as it goes and sent
// together just before the commit (writeTx): on PostgreSQL as one
// pipelined batch, one round trip for all of them instead of one each; on
// SQLite, where a statement costs no round trip, one after the other.
// They run in the order they were queued, so a row is written before the
// rows that refer to it, and nothing in the transaction reads them before
// they are sent: only writes nothing later reads are queued. The first
// error stops the batch, and the transaction rolls back.

// resultRows is what a queued query's check reads: *sql.Rows and
// pgx.Rows both are.
type resultRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// queued is one statement of the queue.
type queued struct {
	what  string // for errors: what the statement does
	query string // with '?' placeholders
	args  []any
	// check, when set, reads the statement's rows (RETURNING) and judges
	// them; its error is returned as is.
	check func(resultRows) error
	// copy, when set, makes the statement a COPY of rows (PostgreSQL,
	// queueRows); query and args are unused.
	copy *copyIn
	// refine, when set, turns the statement's failure into the error
	// returned (it names the statement itself).
	refine func(error) error
}

// copyIn is the rows a COPY FROM STDIN writes into table's columns.
type copyIn struct {
	table   string
	columns []string
	rows    [][]any
}

// fail is the error st returns when the database refuses it.
func (st *queued) fail(err error) error {
	if st.refine != nil {
		return st.refine(err)
	}
	return fmt.Errorf("%s: %w", st.what, err)
}

// txState is what an open write transaction holds besides its rows: the
// connection it runs on (writeTx), its queued statements and its queued
// log leaves (log.go).
type txState struct {
	conn   *sql.Conn
	stmts  []queued
	leaves []*pendingLeaf
}

// stateOf is tx's state, made empty on first use (a transaction not begun
// by writeTx has no connection of its own: its queue runs statement by
// statement).
func (s *Store) stateOf(tx *sql.Tx) *txState {
	v, _ := s.txs.LoadOrStore(tx, &txState{})
	return v.(*txState)
}

// queue adds a statement to tx's queue. what names it in errors.
func (s *Store) queue(tx *sql.Tx, what, query string, args ...any) {
	s.queueCheck(tx, what, nil, query, args...)
}

// queueCheck queues a statement whose rows check reads.
func (s *Store) queueCheck(tx *sql.Tx, what string, check func(resultRows) error, query string, args ...any) {
	q := s.stateOf(tx)
	q.stmts = append(q.stmts, queued{what: what, query: s.d.rebind(query), args: args, check: check})
}

// flushQueue sends what tx queued and empties the queue.
func (s *Store) flushQueue(ctx context.Context, tx *sql.Tx) error {
	q := s.stateOf(tx)
	stmts := q.stmts
	q.stmts = nil
	switch {
	case len(stmts) == 0:
		return nil
	case q.conn != nil && s.d.dollar:
		return q.conn.Raw(func(dc any) error {
			c, ok := dc.(*stdlib.Conn)
			if !ok {
				return fmt.Errorf("flush queued statements: driver connection is %T, not pgx's", dc)
			}
			return sendQueued(ctx, c.Conn(), stmts)
		})
	}
	for _, st := range stmts {
		if err := execQueued(ctx, tx, &st); err != nil {
			return err
		}
	}
	return nil
}

// execQueued runs one queued statement on tx.
func execQueued(ctx context.Context, tx *sql.Tx, st *queued) error {
	if st.check == nil {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return st.fail(err)
		}
		return nil
	}
	rows, err := tx.QueryContext(ctx, st.query, st.args...)
	if err != nil {
		return st.fail(err)
	}
	defer rows.Close()
	if err := checkRows(st, rows); err != nil {
		return err
	}
	return rows.Err() // checkRows read it: nil here
}

// checkRows runs st's check over rows. The statement's own failure (which
// pgx reports through rows.Err, after a check that saw no rows) wins over
// the check's verdict.
func checkRows(st *queued, rows resultRows) error {
	cerr := st.check(rows)
	if err := rows.Err(); err != nil {
		return st.fail(err)
	}
	return cerr
}

// sendQueued runs stmts in order on a PostgreSQL connection inside the
// open transaction: each run of statements as one pipelined batch, each
// COPY on its own (the protocol cannot pipeline a COPY).
func sendQueued(ctx context.Context, c *pgx.Conn, stmts []queued) error {
	for len(stmts) > 0 {
		if st := &stmts[0]; st.copy != nil {
			cp := st.copy
			if _, err := c.CopyFrom(ctx, pgx.Identifier{cp.table}, cp.columns, pgx.CopyFromRows(cp.rows)); err != nil {
				return st.fail(err)
			}
			stmts = stmts[1:]
			continue
		}
		n := 1
		for n < len(stmts) && stmts[n].copy == nil {
			n++
		}
		if err := sendBatch(ctx, c, stmts[:n]); err != nil {
			return err
		}
		stmts = stmts[n:]
	}
	return nil
}

// sendBatch runs stmts as one pipelined batch on a PostgreSQL connection
// inside the open transaction.
func sendBatch(ctx context.Context, c *pgx.Conn, stmts []queued) (err error) {
	b := &pgx.Batch{}
	for _, st := range stmts {
		b.Queue(st.query, st.args...)
	}
	br := c.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}()
	for i := range stmts {
		st := &stmts[i]
		if st.check == nil {
			if _, err := br.Exec(); err != nil {
				return st.fail(err)
			}
			continue
		}
		rows, err := br.Query()
		if err != nil {
			return st.fail(err)
		}
		err = checkRows(st, rows)
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// copyMinRows is the fewest rows a queued insert sends as a COPY on
// PostgreSQL. A COPY leaves the pipelined batch and costs two round trips
// of its own (pgx reads the columns' types, then copies), but it skips
// the parsing, planning and per-row evaluation of a VALUES list: for a
// window of a node (a few dozen rows) the pipelined INSERT is cheaper, for
// a backlog's batch of hundreds the COPY (docs/performance.md).
const copyMinRows = 64

// queueRows queues the insert of rows (all of one width, in the order of
// columns, a comma-separated list) into table: on PostgreSQL a COPY from
// copyMinRows rows up, otherwise multi-row INSERTs, a statement per chunk
// of up to maxStatementParams parameters instead of one per row. what
// names it in errors; refine, when set, makes the error (queued.refine).
func (s *Store) queueRows(tx *sql.Tx, what, table, columns string, rows [][]any, refine func(error) error) {
	if len(rows) == 0 {
		return
	}
	q := s.stateOf(tx)
	if s.d.dollar && len(rows) >= copyMinRows {
		cols := strings.Split(columns, ",")
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		q.stmts = append(q.stmts, queued{what: what, copy: &copyIn{table: table, columns: cols, rows: rows}, refine: refine})
		return
	}
	head := "INSERT INTO " + table + " (" + columns + ") VALUES "
	for len(rows) > 0 {
		n := min(len(rows), max(1, maxStatementParams/len(rows[0])))
		tuple := inList(len(rows[0]))
		var b strings.Builder
		b.Grow(len(head) + n*(len(tuple)+2))
		b.WriteString(head)
		args := make([]any, 0, n*len(rows[0]))
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(tuple)
			args = append(args, r...)
		}
		q.stmts = append(q.stmts, queued{what: what, query: s.d.rebind(b.String()), args: args, refine: refine})
		rows = rows[n:]
	}
}
