// Command fleet is the bench's fleet load: many simulated nodes, each with
// its own Ed25519 key, registered GPUs and hash chain, report to one real
// `voucher-authority serve` process for a fixed time; then every node's
// chain is checked against the database and the authority's head endpoint.
//
// Each node is a goroutine that seals one window (ledger.Sealer, the
// agent's signing path) and POSTs it, and seals the next as soon as the
// authority acknowledged the last: every node draining at once, as after
// an authority outage. It uses a plain HTTP client rather than a reporter
// with a spool per node, so that the load is the authority's and not a
// thousand bbolt files' fsyncs on the same machine.
//
// It prints Go benchmark lines (one per repetition, then the check) and
// exits non-zero if a record was lost or doubled.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/bench/internal/authproc"
	"github.com/gpumeter/gpumeter/metering/reporter"
)

type config struct {
	authority string        // voucher-authority binary
	driver    string        // sqlite or postgres
	pg        string        // admin DSN of the PostgreSQL server
	nodes     int           // simulated nodes
	gpus      int           // GPUs per node
	tenants   int           // tenants sharing them
	duration  time.Duration // one repetition
	warmup    time.Duration // load before the first repetition, not counted
	reps      int
	timeout   time.Duration // per request, as the reporter's authority.timeout
	dir       string        // work directory (config, log, SQLite file)
	interval  time.Duration // steady load: one window per node per interval; 0: drain at once
	replicas  int           // authority processes on the one database, requests in turn
}

func main() {
	var c config
	authproc.Flags(&c.authority, &c.driver, &c.pg, "postgres", "PostgreSQL DSN whose role may CREATE DATABASE (a fresh database is created and dropped)")
	flag.IntVar(&c.nodes, "nodes", 1000, "simulated nodes")
	flag.IntVar(&c.gpus, "gpus", 8, "GPUs per node")
	flag.IntVar(&c.tenants, "tenants", 10, "tenants sharing the GPUs")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "length of one repetition: the load runs without a pause for warmup + reps x duration")
	flag.DurationVar(&c.warmup, "warmup", 5*time.Second, "load before the first repetition (not counted)")
	flag.IntVar(&c.reps, "reps", 5, "repetitions (one line each)")
	flag.DurationVar(&c.timeout, "timeout", reporter.DefaultTimeout, "per-request timeout (the agent's authority.timeout); a timed-out batch is sent again")
	flag.StringVar(&c.dir, "dir", "", "work directory (default: a new temporary one, removed after)")
	flag.DurationVar(&c.interval, "interval", 0, "steady load: each node sends one window per interval, the nodes' phases spread evenly over it (0: every node drains at once)")
	flag.IntVar(&c.replicas, "replicas", 1, "voucher-authority serve processes on the one database; requests go to each in turn (round robin)")
	flag.Parse()
	authproc.Main("fleet", func(ctx context.Context) error { return run(ctx, c, os.Stdout, os.Stderr) })
}

func run(ctx context.Context, c config, out, log io.Writer) (err error) {
	if c.nodes < 1 || c.gpus < 1 || c.tenants < 2 || c.reps < 1 || c.duration <= 0 || c.timeout <= 0 || c.interval < 0 || c.replicas < 1 {
		return fmt.Errorf("need nodes, gpus, reps, replicas >= 1, tenants >= 2, a positive duration and timeout and an interval >= 0")
	}
	if c.replicas > 1 && c.driver != "postgres" {
		return fmt.Errorf("--replicas %d: replicas share one database, which needs --driver postgres", c.replicas)
	}
	if c.dir == "" {
		c.dir, err = os.MkdirTemp("", "gpumeter-fleet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(c.dir)
	}
	db, err := authproc.Open(ctx, c.driver, c.pg, c.dir)
	if err != nil {
		return err
	}
	defer db.DropAfter(&err)

	t := time.Now()
	f, err := newFleet(ctx, c, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "fleet: %d nodes x %d GPUs registered on %s in %s\n", c.nodes, c.gpus, c.driver, time.Since(t).Round(time.Millisecond))

	// One process at a time: each applies the migrations (under their
	// advisory lock) and answers /healthz before the next starts.
	for k := range c.replicas {
		dir := c.dir
		if c.replicas > 1 {
			dir = filepath.Join(c.dir, fmt.Sprintf("replica-%d", k+1))
			if err := os.Mkdir(dir, 0o700); err != nil {
				return err
			}
		}
		proc, perr := authproc.Start(ctx, c.authority, dir, db)
		if perr != nil {
			return perr
		}
		defer func() {
			if serr := proc.Stop(); err == nil {
				err = serr
			}
		}()
		f.urls, f.pids = append(f.urls, proc.URL), append(f.pids, proc.Pid())
	}
	f.interval = c.interval

	phases, err := f.measure(ctx, c.warmup, c.duration, c.reps)
	if err != nil {
		return err
	}
	name := benchName(c)
	for _, p := range phases {
		fmt.Fprintf(out, "%s\t%d\t%.0f records/s\t%.0f batches/s\t%.1f p50-ms\t%.1f p99-ms\t%d retries\t%d shed"+
			"\t%.0f authority-cpu-%%\t%.0f nodes-per-core\t%.0f generator-cpu-%%\t%.0f idle-%%\t%.0f iowait-%%\n",
			name, p.batches, p.recordsPerSec(), p.batchesPerSec(), ms(p.percentile(50)), ms(p.percentile(99)), p.retries, p.shed,
			p.authorityCPU, p.nodesPerCore(), p.generatorCPU, p.idle, p.iowait)
	}

	res, err := f.check(ctx, db)
	if err != nil {
		return err
	}
	kind, sizes, _ := strings.Cut(name, "/")
	fmt.Fprintf(out, "%sCheck/%s\t1\t%d lost\t%d doubled\t%d records\t%d batches\t%d head-mismatches\n",
		kind, sizes, res.lost, res.doubled, res.records, res.batches, res.headMismatches)
	if !res.ok() {
		for _, p := range res.problems {
			fmt.Fprintln(log, "fleet: check:", p)
		}
		return fmt.Errorf("check failed: %d lost, %d doubled, %d head mismatches (authority log %s)",
			res.lost, res.doubled, res.headMismatches, filepath.Join(c.dir, "authority.log"))
	}
	return nil
}

// benchName names c's lines: BenchmarkFleet (drain at once, one
// authority), BenchmarkFleetSteady (one window per interval) or
// BenchmarkFleetReplicas (several authorities), then the driver and sizes.
// bench/cmd/table finds each kind's rows by these names.
func benchName(c config) string {
	kind, sizes := "BenchmarkFleet", fmt.Sprintf("nodes=%d", c.nodes)
	if c.interval > 0 {
		kind, sizes = "BenchmarkFleetSteady", sizes+"/interval="+c.interval.String()
	}
	if c.replicas > 1 {
		kind, sizes = kind+"Replicas", fmt.Sprintf("replicas=%d/", c.replicas)+sizes
	}
	return kind + "/" + c.driver + "/" + sizes
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
