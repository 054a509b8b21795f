package main

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/signing"
)

// TestCoverageCommand reads coverage through the CLI from each store,
// with the registration time and record intervals written as ingest
// would have.
func TestCoverageCommand(t *testing.T) {
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			db, sqlDriver, dollar := t.TempDir()+"/a.db", "sqlite", false
			if driver == store.DriverPostgres {
				db, sqlDriver, dollar = testenv.PostgresDSN(t), "pgx", true
			}
			testCoverageCommand(t, db, sqlDriver, dollar)
		})
	}
}

func testCoverageCommand(t *testing.T, db, sqlDriver string, dollar bool) {
	const gpuA, gpuB = "GPU-c0c0c0c0-0000-4000-8000-00000000000a", "GPU-c0c0c0c0-0000-4000-8000-00000000000b"
	output(t, "node", "register", "--db", db, "--id", "n1", "--provider", testProvider, "--public-key",
		signing.EncodePublicKey(testutil.NewPublicKey(t)), "--model", "H100-SXM5-80GB", "--gpu", gpuA, "--gpu", gpuB)
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, server.ChinaStandardTime)
	conn, err := sql.Open(sqlDriver, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if dollar {
			for i := 1; strings.Contains(q, "?"); i++ {
				q = strings.Replace(q, "?", "$"+strconv.Itoa(i), 1)
			}
		}
		if _, err := conn.ExecContext(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	ms := func(h int) int64 { return day.Add(time.Duration(h) * time.Hour).UnixMilli() }
	exec(`UPDATE node_gpus SET registered_ms = ?`, ms(-24))
	// GPU A reported 02:00-20:00 and GPU B nothing: holes at the day's
	// start and end, and all of B.
	exec(`INSERT INTO gpu_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled) VALUES (?, ?, ?, 'n1', 0)
		ON CONFLICT DO NOTHING`, gpuA, ms(2), ms(20))

	period := []string{"--db", db, "--from", "2026-01-01", "--to", "2026-01-02"}
	var rep server.CoverageReport
	if err := json.Unmarshal([]byte(output(t, append([]string{"coverage", "--node", "n1", "--format", "json"}, period...)...)), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.GPUs) != 2 || rep.ExpectedMillis != 48*3_600_000 || rep.CoveredMillis != 18*3_600_000 ||
		len(rep.GPUs[0].Holes) != 2 || rep.GPUs[0].GPU != gpuA {
		t.Fatalf("coverage report %+v: want 2 GPUs, 48 h expected, 18 h covered, GPU A with 2 holes", rep)
	}
	table := output(t, append([]string{"coverage", "--provider", testProvider}, period...)...)
	for _, w := range []string{"coverage of 2026-01-01 00:00 to 2026-01-02 00:00 (UTC+8)", gpuA, "24.000", "18.000", "6.000",
		"total", "48.000", "30.000", "2026-01-01 20:00:00"} {
		if !strings.Contains(table, w) {
			t.Errorf("coverage table lacks %q:\n%s", w, table)
		}
	}
	rows, err := csv.NewReader(strings.NewReader(output(t, append([]string{"coverage", "--gpu", strings.ToUpper(gpuB), "--format", "csv"}, period...)...))).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][0] != gpuB || rows[1][7] != "0" {
		t.Errorf("coverage CSV of GPU B: %q, %v", rows, err)
	}
	runSteps(t, []step{
		{"coverage without a period", []string{"coverage", "--db", db}, exitUsage, "", `required flag(s) "from", "to" not set`},
		{"coverage backwards", []string{"coverage", "--db", db, "--from", "2026-01-02", "--to", "2026-01-01"}, exitUsage, "", "not after"},
		{"coverage of a bad GPU UUID", append([]string{"coverage", "--gpu", "GPU-1"}, period...), exitUsage, "", "--gpu"},
		{"coverage in XML", append([]string{"coverage", "--format", "xml"}, period...), exitUsage, "", "--format"},
	})
}
