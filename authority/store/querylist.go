package store

import (
	"context"
	"fmt"
	"strings"
)

// rowScanner is what *sql.Row and *sql.Rows share: a scan function
// written against it reads one row from either.
type rowScanner interface{ Scan(dest ...any) error }

// queryList runs q and answers its rows as scan reads them: never nil, so
// an empty listing is [] in JSON. what names the listing in errors.
func queryList[T any](ctx context.Context, s *Store, what string, scan func(rowScanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := []T{}
	err = scanAll(rows, func() error {
		v, err := scan(rows)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// listWhere lists the rows of table (its columns as scan reads them),
// only those whose col is val unless val is "".
func listWhere[T any](ctx context.Context, s *Store, what string, scan func(rowScanner) (T, error), columns, table, col, val string) ([]T, error) {
	var f filter
	f.eq(col, val)
	return queryList(ctx, s, what, scan, `SELECT `+columns+` FROM `+table+f.where(), f.args...)
}

// filter gathers a listing's WHERE conditions and their arguments.
type filter struct {
	conds []string
	args  []any
}

// add adds cond, with one placeholder for arg.
func (f *filter) add(cond string, arg any) {
	f.conds, f.args = append(f.conds, cond), append(f.args, arg)
}

// eq adds col = v unless v is empty (a filter field left unset).
func (f *filter) eq(col, v string) {
	if v != "" {
		f.add(col+` = ?`, v)
	}
}

// where is the WHERE clause of the conditions, "" when there is none.
func (f *filter) where() string {
	if len(f.conds) == 0 {
		return ""
	}
	return ` WHERE ` + strings.Join(f.conds, ` AND `)
}

// clampLimit is a listing's row limit: def when limit is not positive,
// at most max.
func clampLimit(limit, def, max int) int {
	switch {
	case limit <= 0:
		return def
	case limit > max:
		return max
	}
	return limit
}
