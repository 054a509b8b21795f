package spool_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// crashEnv names the spool file a re-executed test binary appends to.
const crashEnv = "GPUMETER_SPOOL_CRASH_CHILD"

// crashRecs is what append number i stores: 1 to 3 records of window i.
func crashRecs(i int) []protocol.Record {
	return windowRecs(i, 1+i%3)[:1+i%3]
}

// TestCrashChild is not a test of its own: run by TestCrashRecovery in a
// child process, it appends in a loop (sealing now and then) and prints
// each completed append, until it is SIGKILLed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only run as TestCrashRecovery's child process")
	}
	ctx := context.Background()
	s, err := spool.Open(spool.Options{Path: path})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	cp, err := s.Checkpoint()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	next := 1
	if cp != nil {
		n, err := strconv.Atoi(string(cp))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		next = n + 1
	}
	seal := newSealFunc(t)
	for i := next; i < next+100000; i++ {
		if err := s.Append(ctx, crashRecs(i), []byte(strconv.Itoa(i))); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println(i)
		if i%4 == 0 {
			if _, _, err := s.SealNext(ctx, seal, 5); err != nil {
				fmt.Println("error", err)
				os.Exit(2)
			}
		}
	}
}

// TestCrashRecovery kills an appending child process at random points, 20
// times over one spool file, and checks after each kill that the spool
// opens with a checkpoint no older than the last append the child saw
// complete, and at the end that the records stored are exactly those of
// appends 1..checkpoint, numbered without holes and chained.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 20 times")
	}
	path := tempPath(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	lastCP := 0
	for run := range 20 {
		killAfter := 1 + rng.IntN(30)
		lastOK := runAndKill(t, path, killAfter)

		s, err := spool.Open(spool.Options{Path: path})
		if err != nil {
			t.Fatalf("run %d: open after kill: %v", run, err)
		}
		cp, err := s.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(string(cp))
		if err != nil {
			t.Fatalf("run %d: checkpoint %q: %v", run, cp, err)
		}
		// The append in flight at the kill may or may not have committed.
		if n != lastOK && n != lastOK+1 {
			t.Fatalf("run %d: checkpoint %d, child last reported append %d", run, n, lastOK)
		}
		if n < lastCP {
			t.Fatalf("run %d: checkpoint went back from %d to %d", run, lastCP, n)
		}
		lastCP = n
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	s := openSpool(t, path, spool.Options{})
	sealAll(t, s, newSealFunc(t), 0)
	un, err := s.Unacked(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	got := openAll(t, un, 1, "")
	var want []protocol.Record
	for i := 1; i <= lastCP; i++ {
		want = append(want, crashRecs(i)...)
	}
	if len(got) != len(want) {
		t.Fatalf("%d records stored, want %d (appends 1..%d)", len(got), len(want), lastCP)
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Seq != uint64(i+1) {
			t.Fatalf("record %d: id %s seq %d, want id %s seq %d", i, got[i].ID, got[i].Seq, want[i].ID, i+1)
		}
	}
	t.Logf("20 kills, %d appends, %d records, %d batches", lastCP, len(got), len(un))
}

// runAndKill starts the child, SIGKILLs it once it has reported killAfter
// appends, and returns the last append it reported complete.
func runAndKill(t *testing.T, path string, killAfter int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(60 * time.Second)
	lastOK, seen, killed := 0, 0, false
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				if !killed {
					t.Fatalf("child exited before it was killed (last append %d)", lastOK)
				}
				return lastOK
			}
			n, err := strconv.Atoi(line)
			if err != nil {
				if !killed {
					t.Fatalf("child: %s", line)
				}
				continue
			}
			lastOK = n
			seen++
			if seen == killAfter && !killed {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("child reported %d appends in 60s, wanted %d", seen, killAfter)
		}
	}
}
