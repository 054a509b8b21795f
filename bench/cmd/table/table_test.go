package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goBench = `goos: linux
BenchmarkSign/seal/records=24-2         	    1501	    139999 ns/op	    171430 records/s	   85191 B/op	      64 allocs/op
BenchmarkSign/seal/records=24-2         	    1480	    141000 ns/op	    170000 records/s	   85191 B/op	      64 allocs/op
BenchmarkSign/seal/records=24-2         	    1400	    150000 ns/op	    160000 records/s	   85191 B/op	      64 allocs/op
BenchmarkSign/ed25519/records=24-2      	    5210	     47365 ns/op	     11625 message-bytes	    500000 records/s	       0 B/op	       0 allocs/op
BenchmarkProcess/node_exporter	1	4.00 cpu-ms/s	19.40 rss-MiB
PASS
`

func TestParseGroupsRunsAndDropsProcs(t *testing.T) {
	r := results{}
	if err := r.parse(strings.NewReader(goBench), "x"); err != nil {
		t.Fatal(err)
	}
	s, ok := r.get("BenchmarkSign/seal/records=24", "records/s")
	if !ok || s.n != 3 || s.median != 170000 || s.min != 160000 || s.max != 171430 {
		t.Fatalf("seal records/s: %+v %v", s, ok)
	}
	if s, ok := r.get("BenchmarkProcess/node_exporter", "rss-MiB"); !ok || s.median != 19.4 {
		t.Fatalf("node_exporter rss: %+v %v", s, ok)
	}
	if err := r.parse(strings.NewReader("BenchmarkX 1 fast ns/op\n"), "bad.txt"); err == nil || !strings.Contains(err.Error(), "bad.txt:1") {
		t.Fatalf("a non-number value: %v, want an error naming bad.txt:1", err)
	}
}

func TestMedianOfEvenCountIsMidpoint(t *testing.T) {
	s, _ := summarize([]float64{4, 1, 3, 2})
	if s.median != 2.5 || s.min != 1 || s.max != 4 {
		t.Fatalf("%+v", s)
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{
		"BenchmarkSign/seal/records=24-2":    "BenchmarkSign/seal/records=24",
		"BenchmarkProcess/node-exporter":     "BenchmarkProcess/node-exporter",
		"BenchmarkFleet/postgres/nodes=1000": "BenchmarkFleet/postgres/nodes=1000",
		"BenchmarkCycleDGXH100-16":           "BenchmarkCycleDGXH100",
	} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRowHasMedianRangeAndRatio(t *testing.T) {
	r := results{}
	if err := r.parse(strings.NewReader(goBench), "x"); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	missing := render(&b, r)
	if missing != len(rows)-1 {
		t.Fatalf("%d rows missing, want all but the 24-record signing row", missing)
	}
	want := "| records signed, batches of 24 (one window of 8 GPUs) | 170 k/s | 160 k/s – 171 k/s | bare ed25519.Sign: 500 k/s | 0.340× | 3 |"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("table lacks\n%s\ngot\n%s", want, b.String())
	}
}

func TestFleetThatLostARecordFails(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.txt", "BenchmarkFleetCheck/postgres/nodes=3\t1\t0 lost\t0 doubled\t72 records\t3 batches\t0 head-mismatches\n")
	lost := write("lost.txt", "BenchmarkFleetCheck/postgres/nodes=3\t1\t1 lost\t0 doubled\t71 records\t3 batches\t0 head-mismatches\n")
	var out bytes.Buffer
	if err := run([]string{good}, nil, "", false, &out); err != nil {
		t.Fatalf("clean fleet: %v", err)
	}
	if !strings.Contains(out.String(), "lost=0 doubled=0") {
		t.Fatalf("no lost/doubled cell in\n%s", out.String())
	}
	if err := run([]string{lost}, nil, "", false, &out); err == nil || !strings.Contains(err.Error(), "lost 1") {
		t.Fatalf("fleet with a lost record: %v, want an error", err)
	}
	if err := run([]string{good}, nil, "", true, &out); err == nil {
		t.Fatal("--require with figures missing: no error")
	}
}

// The replicas' rows stand beside the single authority's, and a record
// doubled by the replicas fails the table as one lost by the single
// authority does.
func TestFleetReplicasRowsAndCheck(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.txt")
	lines := "BenchmarkFleet/postgres/nodes=1000\t100\t2000 records/s\t80 batches/s\t5000 p50-ms\t40000 p99-ms\t0 retries\t9 shed\n" +
		"BenchmarkFleetReplicas/postgres/replicas=2/nodes=1000\t100\t3000 records/s\t120 batches/s\t4000 p50-ms\t30000 p99-ms\t0 retries\t9 shed\n" +
		"BenchmarkFleetReplicasCheck/postgres/replicas=2/nodes=1000\t1\t0 lost\t2 doubled\t72 records\t3 batches\t0 head-mismatches\n"
	if err := os.WriteFile(p, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run([]string{p}, nil, "", false, &out)
	if err == nil || !strings.Contains(err.Error(), "doubled 2") || !strings.Contains(err.Error(), "Replicas") {
		t.Fatalf("replicas that doubled records: %v, want an error naming them", err)
	}
	for _, want := range []string{
		"| fleet: 1000 nodes → 2 authorities on one PostgreSQL database, requests in turn, records acknowledged | 3.00 k/s | 3.00 k/s – 3.00 k/s | one authority: 2.00 k/s | 1.50× | 1 |",
		"| … batch sealed → acknowledged, p99 | 40.0 s | 40.0 s – 40.0 s | 1 min window | 0.667× | 1 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks\n%s\ngot\n%s", want, out.String())
		}
	}
}

// TestCycleRowsKeepWatchedAndFallbackApart: rows 1–3 are the watched
// cycle's, the fallback has its own row; the name of one is a prefix of
// the other's, which must not mix them.
func TestCycleRowsKeepWatchedAndFallbackApart(t *testing.T) {
	r := results{}
	lines := "BenchmarkCycleDGXH100-2 1000 150000 ns/op 3.2 records/op 50000 B/op 60 allocs/op\n" +
		"BenchmarkCycleDGXH100Fallback-2 300 2000000 ns/op 3.1 records/op 400000 B/op 1500 allocs/op\n"
	if err := r.parse(strings.NewReader(lines), "x"); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	render(&b, r)
	for _, want := range []string{
		"200 processes followed by pidfds) | 150 µs |",
		"| … allocations per cycle | 60 |",
		"| … the same cycle without pidfds (each process's start time read from /proc) | 2.00 ms |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
