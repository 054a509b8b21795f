package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/store"
)

// BenchmarkOverview renders an operator's overview over a year of one
// program's data: two nodes with 500 000 usage records each, billed and
// granted (a million records; docs/console.md has the figures). Run:
//
//	go test -run '^$' -bench Overview -benchtime 20x ./authority/console
func BenchmarkOverview(b *testing.B) {
	now := time.Now().UTC()
	d := openDemo(b, store.DriverSQLite, 500_000, 365*24*time.Hour, now, false)
	c, err := New(Options{Store: d.st, OperatorToken: []byte(operatorToken), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	sess := store.ConsoleSession{Role: store.RoleOperator, CSRF: "x", Expires: now.Add(time.Hour)}
	if err := d.st.CreateConsoleSession(b.Context(), "bench-session", sess, now); err != nil {
		b.Fatal(err)
	}
	h := c.Handler()
	get := func(b *testing.B, query string) {
		req := httptest.NewRequest("GET", "/console/"+query, nil)
		req.Header.Set("Cookie", sessionCookie+"=bench-session")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "p1") {
			b.Fatalf("overview: %d\n%.300s", rec.Code, rec.Body.String())
		}
	}
	// The first read folds the whole year into the rollup, once.
	start := time.Now()
	get(b, "")
	b.Logf("first overview (folds a year of records into the rollup): %v", time.Since(start))
	year := "?from=" + d.start.Format(time.DateOnly) + "&to=" + now.AddDate(0, 0, 1).Format(time.DateOnly)
	for _, bc := range []struct{ name, query string }{{"30days", ""}, {"year", year}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				get(b, bc.query)
			}
		})
	}
}
