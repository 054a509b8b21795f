package store

import (
	"context"
	"database/sql"
	"fmt"

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
}

type txQueue struct {
	conn  *sql.Conn
	stmts []queued
}

// queue adds a statement to tx's queue. what names it in errors.
func (s *Store) queue(tx *sql.Tx, what, query string, args ...any) {
	s.queueCheck(tx, what, nil, query, args...)
}

// queueCheck queues a statement whose rows check reads.
func (s *Store) queueCheck(tx *sql.Tx, what string, check func(resultRows) error, query string, args ...any) {
	v, _ := s.txQueues.LoadOrStore(tx, &txQueue{})
	q := v.(*txQueue)
	q.stmts = append(q.stmts, queued{what: what, query: s.d.rebind(query), args: args, check: check})
}

// beginQueue notes the connection tx runs on (writeTx), for the batch.
func (s *Store) beginQueue(tx *sql.Tx, conn *sql.Conn) {
	s.txQueues.Store(tx, &txQueue{conn: conn})
}

// dropQueue forgets tx's queue (it ended).
func (s *Store) dropQueue(tx *sql.Tx) { s.txQueues.Delete(tx) }

// flushQueue sends what tx queued and empties the queue.
func (s *Store) flushQueue(ctx context.Context, tx *sql.Tx) error {
	v, ok := s.txQueues.Load(tx)
	if !ok {
		return nil
	}
	q := v.(*txQueue)
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
			return sendBatch(ctx, c.Conn(), stmts)
		})
	}
	for _, st := range stmts {
		if err := execQueued(ctx, tx, st); err != nil {
			return err
		}
	}
	return nil
}

// execQueued runs one queued statement on tx.
func execQueued(ctx context.Context, tx *sql.Tx, st queued) error {
	if st.check == nil {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
		return nil
	}
	rows, err := tx.QueryContext(ctx, st.query, st.args...)
	if err != nil {
		return fmt.Errorf("%s: %w", st.what, err)
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
func checkRows(st queued, rows resultRows) error {
	cerr := st.check(rows)
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", st.what, err)
	}
	return cerr
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
	for _, st := range stmts {
		if st.check == nil {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("%s: %w", st.what, err)
			}
			continue
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
		err = checkRows(st, rows)
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
