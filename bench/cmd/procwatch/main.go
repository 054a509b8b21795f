// Command procwatch measures running processes side by side: CPU time per
// second (utime+stime from /proc/<pid>/stat) and resident memory (VmRSS
// from /proc/<pid>/status) over consecutive intervals, while scraping
// their /metrics at the start of each interval as a Prometheus server
// would at that scrape interval.
//
// The bench runs it over the agent and Debian's prometheus-node-exporter
// at once, so both see the same machine over the same time. It prints one
// Go benchmark line per process per interval, and fails if a process
// exits or a scrape is not answered 200.
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
	hz := flag.Int("hz", 100, "clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK)")
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
	if len(ps) == 0 || *reps < 1 || *interval <= 0 || *hz < 1 {
		fmt.Fprintln(os.Stderr, "procwatch: need at least one --proc, reps >= 1, a positive interval and hz")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, ps, scrapes, *interval, *reps, *warmup, *hz, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "procwatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, ps []proc, urls []string, interval time.Duration, reps int, warmup time.Duration, hz int, out io.Writer) error {
	if err := sleep(ctx, warmup); err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for range reps {
		start := time.Now()
		ticks0 := make([]int64, len(ps))
		for i, p := range ps {
			t, err := cpuTicks(p.pid)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			ticks0[i] = t
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
			t, err := cpuTicks(p.pid)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			rss, err := rssBytes(p.pid)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			cpuMs := float64(t-ticks0[i]) * 1000 / float64(hz) / elapsed
			fmt.Fprintf(out, "BenchmarkProcess/%s\t1\t%.2f cpu-ms/s\t%.2f rss-MiB\n", p.name, cpuMs, float64(rss)/(1<<20))
		}
	}
	return nil
}

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

// cpuTicks is utime+stime of pid, in clock ticks (proc(5): fields 14 and
// 15 of /proc/<pid>/stat; the command name in field 2 may hold spaces, so
// fields are counted after its closing parenthesis).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d (did it exit?): %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return u + k, nil
}

// rssBytes is VmRSS of pid.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d (did it exit?): %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, v)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, v)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
