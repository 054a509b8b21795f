package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
)

// The queue (pipeline.go) sends an ingest's writes together before the
// commit: in order, every check run, and the first failure rolls back the
// whole transaction, what ran at once and what was queued alike.
func TestQueuedStatements(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		s := open(t)
		ctx := context.Background()
		ins := `INSERT INTO log_checkpoints (size, note, created) VALUES (?, ?, 0)`
		sizes := func() []int64 {
			t.Helper()
			rows, err := s.r.QueryContext(ctx, `SELECT size FROM log_checkpoints ORDER BY size`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []int64
			for rows.Next() {
				var n int64
				if err := rows.Scan(&n); err != nil {
					t.Fatal(err)
				}
				out = append(out, n)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}

		// Sent in order, the check reads what RETURNING gives.
		var seen []int64
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			s.queue(tx, "first", ins, 1, "a")
			s.queueCheck(tx, "second", func(rows resultRows) error {
				for rows.Next() {
					var n int64
					if err := rows.Scan(&n); err != nil {
						return err
					}
					seen = append(seen, n)
				}
				return nil
			}, ins+` RETURNING size`, 2, "b")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := sizes(); len(got) != 2 || got[0] != 1 || got[1] != 2 || len(seen) != 1 || seen[0] != 2 {
			t.Fatalf("stored %v, check saw %v; want [1 2] and [2]", got, seen)
		}

		// A failing statement names itself, keeps the database's error,
		// and nothing of the transaction stays: neither the write made at
		// once nor the queued one before it.
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			if _, err := s.exec(ctx, tx, ins, 10, "now"); err != nil {
				return err
			}
			s.queue(tx, "fine", ins, 11, "c")
			s.queue(tx, "repeat size 1", ins, 1, "d")
			s.queue(tx, "after", ins, 12, "e")
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "repeat size 1") || !s.d.isUnique(err) {
			t.Fatalf("error %v: want the queued statement's unique violation, named", err)
		}
		if got := sizes(); len(got) != 2 {
			t.Fatalf("after a failed batch the table holds %v, want [1 2]", got)
		}

		// A check's verdict refuses the transaction as is.
		verdict := errors.New("total over its window")
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			s.queueCheck(tx, "checked", func(rows resultRows) error {
				for rows.Next() {
				}
				return verdict
			}, ins+` RETURNING size`, 20, "f")
			s.queue(tx, "later", ins, 21, "g")
			return nil
		})
		if !errors.Is(err, verdict) {
			t.Fatalf("error %v, want the check's", err)
		}
		if got := sizes(); len(got) != 2 {
			t.Fatalf("after a refused check the table holds %v, want [1 2]", got)
		}
	})
}
