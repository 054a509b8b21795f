package store

import (
	"context"
	"path/filepath"
	"testing"
)

// eachDriver runs fn once per store driver, as a subtest named after it.
// open gives a new, empty store of that driver, closed when the test ends.
// Today: sqlite. The PostgreSQL work adds "postgres" here (one database per
// open, via internal/testenv), so every test written with eachDriver runs
// on both.
func eachDriver(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *Store)) {
	t.Run(DriverSQLite, func(t *testing.T) {
		fn(t, func(t *testing.T) *Store {
			t.Helper()
			s, err := Open(context.Background(), DriverSQLite, filepath.Join(t.TempDir(), "authority.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
}
