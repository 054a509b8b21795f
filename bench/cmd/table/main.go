// Command table reads the Go benchmark lines bench/run collected (from go
// test -bench and from the bench's own tools) and prints docs/
// performance.md's table: per figure the median over the runs, their
// range, the peer or limit measured beside it and the ratio.
//
// It exits non-zero if the fleet's check found a record lost or doubled,
// or if a figure it was asked to require did not run.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

var rows = []row{
	measured{what: "collect + attribute + meter cycle, mock DGX H100 (8 GPUs × 7 MIG = 56 units, 200 processes followed by pidfds)",
		value: series{"BenchmarkCycleDGXH100", "ns/op"}, format: duration, limit: 1e9, peerLabel: "1 s poll interval", ratio: percent},
	measured{what: "… memory allocated per cycle",
		value: series{"BenchmarkCycleDGXH100", "B/op"}, format: kib},
	measured{what: "… allocations per cycle",
		value: series{"BenchmarkCycleDGXH100", "allocs/op"}, format: count},
	measured{what: "… the same cycle without pidfds (each process's start time read from /proc)",
		value: series{"BenchmarkCycleDGXH100Fallback", "ns/op"}, format: duration, limit: 1e9, peerLabel: "1 s poll interval", ratio: percent},
	measured{what: "agent CPU, metering the DGX H100 day scenario in real time",
		value: series{"BenchmarkProcess/gpumeter", "cpu-ms/s"}, format: cpuMs,
		peer: &series{"BenchmarkProcess/node_exporter", "cpu-ms/s"}, peerLabel: "node_exporter", ratio: times},
	measured{what: "agent resident memory (VmRSS), same run",
		value: series{"BenchmarkProcess/gpumeter", "rss-MiB"}, format: mib,
		peer: &series{"BenchmarkProcess/node_exporter", "rss-MiB"}, peerLabel: "node_exporter", ratio: times},
	measured{what: "records signed, batches of 24 (one window of 8 GPUs)",
		value: series{"BenchmarkSign/seal/records=24", "records/s"}, format: rate,
		peer: &series{"BenchmarkSign/ed25519/records=24", "records/s"}, peerLabel: "bare ed25519.Sign", ratio: times},
	measured{what: "records signed, batches of 1 000 (reporter default, backlog)",
		value: series{"BenchmarkSign/seal/records=1000", "records/s"}, format: rate,
		peer: &series{"BenchmarkSign/ed25519/records=1000", "records/s"}, peerLabel: "bare ed25519.Sign", ratio: times},
	measured{what: "records verified and stored by the authority, SQLite, batches of 240",
		value: series{"BenchmarkIngest/sqlite/verified", "records/s"}, format: rate,
		peer: &series{"BenchmarkIngest/sqlite/bare-insert", "records/s"}, peerLabel: "bare INSERT", ratio: times},
	measured{what: "records verified and stored by the authority, PostgreSQL, batches of 240",
		value: series{"BenchmarkIngest/postgres/verified", "records/s"}, format: rate,
		peer: &series{"BenchmarkIngest/postgres/bare-insert", "records/s"}, peerLabel: "bare INSERT", ratio: times},
	measured{what: "one agent drains a 24 h backlog ({windows} windows × 8 GPUs, 10 tenants) into the authority on SQLite",
		value: series{"BenchmarkDrain/sqlite/", "s"}, format: seconds, limit: 86400, peerLabel: "24 h", ratio: realTime},
	measured{what: "… on PostgreSQL",
		value: series{"BenchmarkDrain/postgres/", "s"}, format: seconds, limit: 86400, peerLabel: "24 h", ratio: realTime},
	measured{what: "fleet: {nodes} nodes → one authority on PostgreSQL, records acknowledged",
		value: series{"BenchmarkFleet/postgres/", "records/s"}, format: rate},
	measured{what: "… nodes it sustains at one window (24 records) a minute",
		value: series{"BenchmarkFleet/postgres/", "batches/s"}, scale: 60, format: count},
	measured{what: "… batch sealed → acknowledged, p50",
		value: series{"BenchmarkFleet/postgres/", "p50-ms"}, format: milliseconds},
	measured{what: "… batch sealed → acknowledged, p99",
		value: series{"BenchmarkFleet/postgres/", "p99-ms"}, format: milliseconds, limit: 60e3, peerLabel: "1 min window", ratio: times},
	measured{what: "… requests that timed out (reporter's 10 s) and were sent again",
		value: series{"BenchmarkFleet/postgres/", "retries"}, format: count},
	measured{what: "… requests the authority shed (503 with Retry-After, before reading them) and were sent again after it",
		value: series{"BenchmarkFleet/postgres/", "shed"}, format: count},
	fleetCheck{prefix: "BenchmarkFleetCheck/postgres/"},
	measured{what: "… nodes one core of the authority process serves at one window a minute (its CPU per batch, saturated)",
		value: series{"BenchmarkFleet/postgres/", "nodes-per-core"}, format: count},
	measured{what: "fleet, steady: {nodes} nodes each sending one window a minute, phases spread: batch sealed → acknowledged, p50",
		value: series{"BenchmarkFleetSteady/postgres/", "p50-ms"}, format: milliseconds, limit: 1e3, peerLabel: "1 s goal", ratio: times},
	measured{what: "… batch sealed → acknowledged, p99",
		value: series{"BenchmarkFleetSteady/postgres/", "p99-ms"}, format: milliseconds, limit: 1e3, peerLabel: "1 s goal", ratio: times},
	measured{what: "… nodes one core of the authority process serves at one window a minute (its CPU per batch, steady)",
		value: series{"BenchmarkFleetSteady/postgres/", "nodes-per-core"}, format: count},
	fleetCheck{prefix: "BenchmarkFleetSteadyCheck/postgres/"},
	measured{what: "fleet: {nodes} nodes → {replicas} authorities on one PostgreSQL database, requests in turn, records acknowledged",
		value: series{"BenchmarkFleetReplicas/postgres/", "records/s"}, format: rate,
		peer: &series{"BenchmarkFleet/postgres/", "records/s"}, peerLabel: "one authority", ratio: times},
	measured{what: "… batch sealed → acknowledged, p50",
		value: series{"BenchmarkFleetReplicas/postgres/", "p50-ms"}, format: milliseconds,
		peer: &series{"BenchmarkFleet/postgres/", "p50-ms"}, peerLabel: "one authority", ratio: times},
	measured{what: "… batch sealed → acknowledged, p99",
		value: series{"BenchmarkFleetReplicas/postgres/", "p99-ms"}, format: milliseconds,
		peer: &series{"BenchmarkFleet/postgres/", "p99-ms"}, peerLabel: "one authority", ratio: times},
	measured{what: "… requests that timed out (reporter's 10 s) and were sent again",
		value: series{"BenchmarkFleetReplicas/postgres/", "retries"}, format: count},
	measured{what: "… requests shed (503 with Retry-After) and sent again after it",
		value: series{"BenchmarkFleetReplicas/postgres/", "shed"}, format: count},
	fleetCheck{prefix: "BenchmarkFleetReplicasCheck/postgres/"},
	measured{what: "records verified, priced (rate card, a voucher paying half) and logged by the authority, SQLite, batches of 240",
		value: series{"BenchmarkIngest/sqlite/priced", "records/s"}, format: rate,
		peer: &series{"BenchmarkIngest/sqlite/bare-insert", "records/s"}, peerLabel: "bare INSERT", ratio: times},
	measured{what: "… PostgreSQL",
		value: series{"BenchmarkIngest/postgres/priced", "records/s"}, format: rate,
		peer: &series{"BenchmarkIngest/postgres/bare-insert", "records/s"}, peerLabel: "bare INSERT", ratio: times},
}

// fleetChecks are the prefixes of the fleet's end-of-run reckonings: a
// record lost or doubled in any fails the table.
var fleetChecks = []string{"BenchmarkFleetCheck/postgres/", "BenchmarkFleetSteadyCheck/postgres/", "BenchmarkFleetReplicasCheck/postgres/"}

// fleetCheck is one fleet run's end-of-run reckoning against the
// database, found by its benchmark name's prefix.
type fleetCheck struct{ prefix string }

func (fleetCheck) label() string { return "fleet: records lost / doubled" }

func (c fleetCheck) render(r results) (cell, bool) {
	s := series{c.prefix, "lost"}
	name := s.resolve(r)
	lost, ok1 := r.get(name, "lost")
	doubled, ok2 := r.get(name, "doubled")
	recs, ok3 := r.get(name, "records")
	if !ok1 || !ok2 || !ok3 {
		return cell{}, false
	}
	return cell{
		what:   "… checked against the database and GET head: records lost / doubled",
		median: fmt.Sprintf("lost=%.0f doubled=%.0f", lost.max, doubled.max),
		spread: "of " + count(recs.max) + " records", peer: "—", ratio: "—", runs: lost.n,
	}, true
}

func main() {
	out := flag.String("o", "", "also write the table to this file")
	var notes listFlag
	flag.Var(&notes, "note", "a line to print under the table's heading (repeatable)")
	require := flag.Bool("require", false, "fail if a figure did not run")
	flag.Parse()
	if err := run(flag.Args(), notes, *out, *require, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, "; ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(files, notes []string, out string, require bool, stdout io.Writer) error {
	if len(files) == 0 {
		return fmt.Errorf("no result files given")
	}
	r := results{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := r.parse(bytes.NewReader(data), f); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Measured %s on %s.\n", time.Now().UTC().Format("2006-01-02"), machine())
	for _, n := range notes {
		fmt.Fprintln(&b, n)
	}
	fmt.Fprintln(&b)
	missing := render(&b, r)
	if _, err := stdout.Write(b.Bytes()); err != nil {
		return err
	}
	if out != "" {
		// Atomically: an interrupted run keeps the previous table whole.
		if err := renameio.WriteFile(out, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	for _, prefix := range fleetChecks {
		name := series{prefix, ""}.resolve(r)
		if lost, _ := r.get(name, "lost"); lost.max != 0 {
			return fmt.Errorf("the fleet lost %.0f records (%s)", lost.max, name)
		}
		if d, _ := r.get(name, "doubled"); d.max != 0 {
			return fmt.Errorf("the fleet doubled %.0f records (%s)", d.max, name)
		}
	}
	if require && missing > 0 {
		return fmt.Errorf("%d figures did not run", missing)
	}
	return nil
}

// render writes the markdown table and returns how many rows had no data.
func render(w io.Writer, r results) (missing int) {
	fmt.Fprintln(w, "| # | figure | median | range (min – max) | peer or limit (median) | ratio | runs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for i, rw := range rows {
		c, ok := rw.render(r)
		if !ok {
			missing++
			fmt.Fprintf(w, "| %d | %s | not measured | | | | 0 |\n", i+1, rw.label())
			continue
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %d |\n", i+1, c.what, c.median, c.spread, c.peer, c.ratio, c.runs)
	}
	return missing
}

// machine is the CPU count and model this ran on.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
