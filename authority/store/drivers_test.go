package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gpumeter/gpumeter/internal/testenv"
)

// drivers are the store drivers every eachDriver test runs on.
var drivers = []string{DriverSQLite, DriverPostgres}

// newSource returns the source of a new, empty database of driver: a
// SQLite file in t.TempDir(), or a fresh PostgreSQL database (dropped when
// t ends; testenv skips, or fails under GPUMETER_TEST_REQUIRE=1, when no
// server is configured).
func newSource(t testing.TB, driver string) string {
	t.Helper()
	if driver == DriverPostgres {
		return testenv.PostgresDSN(t)
	}
	return filepath.Join(t.TempDir(), "authority.db")
}

// openSource opens driver's database at source, closed when t ends.
func openSource(t testing.TB, driver, source string) *Store {
	t.Helper()
	s, err := Open(context.Background(), driver, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eachDriver runs fn once per store driver, as a subtest named after it.
// open gives a new, empty store of that driver (a new SQLite file, or a new
// PostgreSQL database), closed when the test ends. Every test written with
// eachDriver runs on both.
func eachDriver(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *Store)) {
	eachSource(t, func(t *testing.T, driver string, source func(t *testing.T) string) {
		fn(t, func(t *testing.T) *Store {
			t.Helper()
			return openSource(t, driver, source(t))
		})
	})
}

// eachSource is eachDriver for tests that open one database more than once
// (two Stores are two processes' pools): source gives a new, empty
// database's source for Open.
func eachSource(t *testing.T, fn func(t *testing.T, driver string, source func(t *testing.T) string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			fn(t, d, func(t *testing.T) string {
				t.Helper()
				return newSource(t, d)
			})
		})
	}
}

// eachStore is eachDriver for the tests that want one new, empty store.
func eachStore(t *testing.T, fn func(t *testing.T, ctx context.Context, s *Store)) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		fn(t, context.Background(), open(t))
	})
}

// eachStorePair is eachSource for the tests of two authority processes:
// two Stores (two pools) on one new, empty database of each driver.
func eachStorePair(t *testing.T, fn func(t *testing.T, ctx context.Context, stores []*Store)) {
	eachSource(t, func(t *testing.T, driver string, source func(t *testing.T) string) {
		src := source(t)
		fn(t, context.Background(), []*Store{openSource(t, driver, src), openSource(t, driver, src)})
	})
}
