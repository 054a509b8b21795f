package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/bench/internal/procfs"
)

// Watching this test's own process: a line per interval with its CPU and
// memory, and one scrape per interval.
func TestWatchesAProcessAndScrapesEachInterval(t *testing.T) {
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scrapes.Add(1)
		_, _ = w.Write([]byte("up 1\n"))
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []proc{{"self", os.Getpid()}}, []string{srv.URL}, 20*time.Millisecond, 2, 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "BenchmarkProcess/self\t1\t") || !strings.Contains(lines[0], " rss-MiB") {
		t.Fatalf("output:\n%s", out.String())
	}
	// VmRSS, then its anonymous and file-backed parts, which add up to it
	// (less shared memory, which this process has none of, and what moved
	// between the three reads).
	f := strings.Fields(lines[0])
	if len(f) != 10 || f[5] != "rss-MiB" || f[7] != "anon-MiB" || f[9] != "file-MiB" {
		t.Fatalf("line %q: want cpu-ms/s, rss-MiB, anon-MiB, file-MiB", lines[0])
	}
	var mem [3]float64
	for j := range mem {
		if mem[j], err = strconv.ParseFloat(f[4+2*j], 64); err != nil || mem[j] <= 0 {
			t.Fatalf("line %q: field %d %q", lines[0], 4+2*j, f[4+2*j])
		}
	}
	if d := mem[0] - mem[1] - mem[2]; d < -1 || d > 1 {
		t.Errorf("rss %.2f MiB is not anon %.2f + file %.2f", mem[0], mem[1], mem[2])
	}
	if n := scrapes.Load(); n != 2 {
		t.Fatalf("%d scrapes in 2 intervals, want 2", n)
	}
	if rss, err := procfs.RSSBytes(os.Getpid()); err != nil || rss < 1<<20 {
		t.Fatalf("own VmRSS %d bytes, %v", rss, err)
	}
	// Burn CPU on this thread until the kernel says it ran 50 ms (on a
	// loaded machine that takes longer than 50 ms of wall time): the
	// process's run time, as procfs reads it in clock ticks, must grow at
	// least as much, less one tick either side.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := procfs.CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	const burn = 50 * time.Millisecond
	start := threadCPU(t)
	for deadline := time.Now().Add(time.Minute); threadCPU(t)-start < burn; {
		if time.Now().After(deadline) {
			t.Fatal("this thread did not get 50 ms of CPU in a minute")
		}
	}
	after, err := procfs.CPUTime(os.Getpid())
	if err != nil || after-before < burn-20*time.Millisecond {
		t.Fatalf("CPU time grew %s while this thread alone ran %s (%v)", after-before, burn, err)
	}
}

// threadCPU is the calling OS thread's user+system time.
func threadCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestGoneProcessIsAnError(t *testing.T) {
	if _, err := procfs.CPUTime(1 << 30); err == nil {
		t.Fatal("no error for a pid that cannot exist")
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	err := run(context.Background(), []proc{{"self", os.Getpid()}}, []string{srv.URL}, time.Millisecond, 1, 0, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("scrape answered 404: %v, want an error", err)
	}
}
