package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/server"
)

// day is the operator API coverage test's day, long past.
var day = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// setCoverage writes what ingest and registration would have: when each
// GPU was registered and the record intervals reported (SQLite only).
func setCoverage(t *testing.T, dbPath string, registered map[string]time.Time, windows map[string][][2]time.Time) {
	t.Helper()
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for gpu, at := range registered {
		if _, err := db.ExecContext(ctx, `UPDATE node_gpus SET registered_ms = ? WHERE gpu_uuid = ?`, at.UnixMilli(), gpu); err != nil {
			t.Fatal(err)
		}
	}
	for gpu, ivs := range windows {
		for _, iv := range ivs {
			if _, err := db.ExecContext(ctx, `INSERT INTO gpu_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled)
				SELECT ?, ?, ?, node_id, 0 FROM node_gpus WHERE gpu_uuid = ? ON CONFLICT DO NOTHING`,
				gpu, iv[0].UnixMilli(), iv[1].UnixMilli(), gpu); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestAdminCoverage(t *testing.T) {
	a := newAdminEnv(t, "")
	setCoverage(t, a.DBPath,
		map[string]time.Time{gpuA: day.Add(-24 * time.Hour), gpuB: day.Add(12 * time.Hour), gpuZ: day.Add(-24 * time.Hour)},
		map[string][][2]time.Time{gpuA: {{day, day.Add(6 * time.Hour)}, {day.Add(12 * time.Hour), day.Add(24 * time.Hour)}}})
	period := "from=" + day.Format(time.RFC3339) + "&to=" + day.Add(24*time.Hour).Format(time.RFC3339)
	get := func(query string) server.CoverageReport {
		t.Helper()
		var rep server.CoverageReport
		if err := json.Unmarshal(a.must(200, "GET", "/v1/admin/coverage?"+period+query, nil).body, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}

	rep := get("&node=" + node1)
	if len(rep.GPUs) != 2 || rep.ExpectedMillis != 36*3_600_000 || rep.CoveredMillis != 18*3_600_000 {
		t.Fatalf("node-01's coverage: %d GPUs, expected %d ms, covered %d ms; want 2, 36 h, 18 h", len(rep.GPUs), rep.ExpectedMillis, rep.CoveredMillis)
	}
	ga, gb := rep.GPUs[0], rep.GPUs[1]
	if ga.GPU != gpuA || ga.Node != node1 || ga.Provider != provider || len(ga.Holes) != 1 ||
		!ga.Holes[0].From.Equal(day.Add(6*time.Hour)) || !ga.Holes[0].To.Equal(day.Add(12*time.Hour)) || ga.Holes[0].Millis != 6*3_600_000 {
		t.Errorf("GPU A: %+v, want one hole 06:00-12:00", ga)
	}
	if gb.GPU != gpuB || !gb.From.Equal(day.Add(12*time.Hour)) || gb.ExpectedMillis != 12*3_600_000 || gb.CoveredMillis != 0 || len(gb.Holes) != 1 {
		t.Errorf("GPU B (registered at noon): %+v, want 12 h expected, all a hole", gb)
	}
	if rep := get("&provider=" + provider); len(rep.GPUs) != 3 {
		t.Errorf("the provider's coverage lists %d GPUs, want 3", len(rep.GPUs))
	}
	// A GPU UUID is taken in its canonical form.
	if rep := get("&gpu=" + url.QueryEscape("  gpu-AAAAAAAA-0000-0000-0000-000000000001")); len(rep.GPUs) != 1 || rep.GPUs[0].GPU != gpuA {
		t.Errorf("coverage of GPU A in upper case: %+v", rep.GPUs)
	}
	if rep := get("&entity=nobody"); len(rep.GPUs) != 0 || rep.GPUs == nil {
		t.Errorf("coverage of an entity without usage: %+v, want an empty list", rep.GPUs)
	}

	ans := a.must(200, "GET", "/v1/admin/coverage?"+period+"&node="+node1+"&format=csv", nil)
	if ct := ans.header.Get("Content-Type"); ct != server.CSVContentType {
		t.Errorf("CSV content type %q", ct)
	}
	if rows, err := csv.NewReader(bytes.NewReader(ans.body)).ReadAll(); err != nil || len(rows) != 3 || rows[1][0] != gpuA {
		t.Errorf("CSV %q, %v: want a header and GPU A's and B's rows", rows, err)
	}

	a.refused(400, "bad-request", "GET", "/v1/admin/coverage?"+period+"&gpu=GPU-1", nil, "GPU-1")
	a.refused(400, "bad-request", "GET", "/v1/admin/coverage?from=2026-01-01", nil, "to")
	if ans := a.call("GET", "/v1/admin/coverage?"+period, "", nil); ans.status != 401 {
		t.Errorf("coverage without the token: %d", ans.status)
	}
}
