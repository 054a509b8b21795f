package testenv

import (
	"database/sql"
	"testing"
)

func TestPostgresDSNGivesAnEmptyDatabase(t *testing.T) {
	dsn := PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("new test database has %d tables, want 0", n)
	}
}
