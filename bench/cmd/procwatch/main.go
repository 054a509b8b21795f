// Command procwatch measures running processes side by side: CPU time per
// second (the threads' run time from /proc/<pid>/task/*/schedstat, to the
// nanosecond) and resident memory (VmRSS
// from /proc/<pid>/status) over consecutive intervals, while scraping
// their /metrics at the start of each interval as a Prometheus server
// would at that scrape interval.
//
// The bench runs it over the agent and Debian's prometheus-node-exporter
// at once, so both see the same machine over the same time. It prints one
// Go benchmark line per process per interval, and fails if a process
// exits or a scrape is not answered 200. Besides VmRSS (rss-MiB) each line
// gives its two parts: anonymous memory (anon-MiB: heap, stacks, the
// runtime's own) and file-backed pages (file-MiB: mostly the executable's
// own code and data, mapped from the page cache and shared).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpumeter/gpumeter/bench/internal/procfs"
)

type proc struct {
	name string
	pid  int
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var procs, scrapes listFlag
	flag.Var(&procs, "proc", "NAME=PID of a process to measure (repeatable)")
	flag.Var(&scrapes, "scrape", "URL to GET at the start of each interval (repeatable)")
	interval := flag.Duration("interval", 15*time.Second, "interval length (and scrape period)")
	reps := flag.Int("reps", 5, "intervals (one line each per process)")
	warmup := flag.Duration("warmup", 10*time.Second, "wait before the first interval")
	flag.Parse()
	var ps []proc
	for _, p := range procs {
		name, pid, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || name == "" {
			fmt.Fprintf(os.Stderr, "procwatch: --proc %q: want NAME=PID\n", p)
			os.Exit(2)
		}
		ps = append(ps, proc{name, n})
	}
	if len(ps) == 0 || *reps < 1 || *interval <= 0 {
		fmt.Fprintln(os.Stderr, "procwatch: need at least one --proc, reps >= 1 and a positive interval")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, ps, scrapes, *interval, *reps, *warmup, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "procwatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, ps []proc, urls []string, interval time.Duration, reps int, warmup time.Duration, out io.Writer) error {
	if err := sleep(ctx, warmup); err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for range reps {
		start := time.Now()
		cpu0 := make([]time.Duration, len(ps))
		for i, p := range ps {
			t, err := procfs.CPUTime(p.pid)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			cpu0[i] = t
		}
		for _, u := range urls {
			if err := scrape(ctx, client, u); err != nil {
				return err
			}
		}
		if err := sleep(ctx, time.Until(start.Add(interval))); err != nil {
			return err
		}
		elapsed := time.Since(start).Seconds()
		for i, p := range ps {
			t, err := procfs.CPUTime(p.pid)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			var mem [3]int64 // VmRSS, then its anonymous and file-backed parts
			for j, field := range []string{"VmRSS", "RssAnon", "RssFile"} {
				if mem[j], err = procfs.StatusBytes(p.pid, field); err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
			}
			cpuMs := float64(t-cpu0[i]) / float64(time.Millisecond) / elapsed
			fmt.Fprintf(out, "BenchmarkProcess/%s\t1\t%.3f cpu-ms/s\t%.2f rss-MiB\t%.2f anon-MiB\t%.2f file-MiB\n",
				p.name, cpuMs, mib(mem[0]), mib(mem[1]), mib(mem[2]))
		}
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// scrape GETs u and reads the whole answer, as a Prometheus scrape does.
func scrape(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", u, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("scrape %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: status %d", u, resp.StatusCode)
	}
	return nil
}
