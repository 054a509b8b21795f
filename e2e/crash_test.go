package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gpumeter/gpumeter/internal/testutil"
)

// TestCrashIsRestartedAndLosesNothing crashes the agent the two ways Go
// and the watchdog do (SIGABRT: exit 2 with a goroutine dump, as an
// unrecovered panic exits 2; SIGKILL: what systemd's watchdog sends after
// its SIGABRT is ignored), checks that the shipped unit restarts it for
// each, restarts it as systemd would, and checks that the authority ends
// with every metered record once and each GPU's time tiled: the crash
// costs exactly its downtime, recorded as agent_down.
func TestCrashIsRestartedAndLosesNothing(t *testing.T) {
	unit := readUnit(t, filepath.Join("..", "packaging", "systemd", "gpumeter.service"))
	a := NewAuthority(t, AuthorityOptions{})
	a.Start()
	n := NewNode(t, a, NodeOptions{Scenario: OneGPU("GPU-e2ec0000-0000-4000-8000-000000000000"), Speed: 300})
	for _, crash := range []struct {
		sig  syscall.Signal
		exit int // -1: killed by the signal
	}{{syscall.SIGABRT, 2}, {syscall.SIGKILL, -1}} {
		p := n.Start()
		// Crash once the node has a checkpoint (something is delivered,
		// so something was committed), mid-way through its timeline.
		before := len(a.Stored(n.ID))
		WaitFor(t, time.Minute, "a delivery", func() bool { return len(a.Stored(n.ID)) > before+1 })
		_ = p.Signal(crash.sig)
		if got := p.ExitCode(); got != crash.exit {
			t.Fatalf("after %s the agent exited %d, want %d", crash.sig, got, crash.exit)
		}
		if !unit.restarts(crash.exit, crash.sig) {
			t.Fatalf("gpumeter.service does not restart the agent after %s (exit %d): Restart=%s RestartPreventExitStatus=%v",
				crash.sig, crash.exit, unit.restart, unit.prevent)
		}
	}
	if unit.restarts(78, 0) || unit.restarts(64, 0) {
		t.Errorf("gpumeter.service restarts on a configuration or usage error (exit 78/64): RestartPreventExitStatus=%v", unit.prevent)
	}
	n.Start()
	a.WaitDelivered(n, 3*time.Minute)
	n.Agent.Stop()

	stored := a.Stored(n.ID)
	checkTiled(t, stored)
	// Every record the agent wrote to its records file (after the spool
	// committed it) is stored, with the same milliseconds. (The file may
	// miss a record committed just before a crash; the tiling shows none
	// is missing at the authority.)
	have := map[usageKey]int64{}
	for _, r := range stored {
		have[usageKey{r.Unit, r.Kind, r.Tenant, r.Gap, r.StartMS, r.EndMS}] += r.GPUMillis
	}
	want := map[usageKey]int64{}
	for _, r := range n.Metered() {
		want[usageKey{r.GPUUUID, string(r.Kind), r.Tenant, r.GapReason, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()}] += r.GPUMillis
	}
	end := n.End().UnixMilli()
	for k, ms := range want {
		if k.end <= end && have[k] != ms {
			t.Errorf("%v: metered %d ms, stored %d", k, ms, have[k])
		}
	}
	down := int64(0)
	for _, r := range stored {
		if r.Gap == "agent_down" {
			down += r.GPUMillis
		}
	}
	if down == 0 {
		t.Error("two crashes but no agent_down gap stored")
	}
}

// checkTiled checks the authority's records of a node: sequence numbers
// 1..n each once, no record id twice, and per unit the windows follow each
// other with no hole and no overlap, each summing to its length.
func checkTiled(t testing.TB, stored []StoredRecord) {
	t.Helper()
	ids := map[string]bool{}
	units := map[string]map[testutil.Window]int64{}
	for i, r := range stored {
		if r.Seq != int64(i+1) {
			t.Fatalf("record %d has seq %d: a sequence number is missing or doubled", i, r.Seq)
		}
		if ids[r.ID] {
			t.Fatalf("record %s stored twice", r.ID)
		}
		ids[r.ID] = true
		if r.Kind == "inventory" {
			continue
		}
		if units[r.Unit] == nil {
			units[r.Unit] = map[testutil.Window]int64{}
		}
		units[r.Unit][testutil.Window{Start: r.StartMS, End: r.EndMS}] += r.GPUMillis
	}
	for unit, sums := range units {
		testutil.CheckTiled(t, unit, sums)
	}
}

// unitFile is what decides systemd's restart of a service.
type unitFile struct {
	restart string
	prevent []string // RestartPreventExitStatus= entries: numbers or signal names
}

func readUnit(t testing.TB, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{restart: "no"}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		switch {
		case !ok:
		case k == "Restart":
			u.restart = v
		case k == "RestartPreventExitStatus" && v == "":
			u.prevent = nil // an empty assignment resets the list
		case k == "RestartPreventExitStatus":
			u.prevent = append(u.prevent, strings.Fields(v)...)
		}
	}
	return u
}

// restarts is systemd.service(5)'s rule for an exit code (exit >= 0) or a
// death by sig (exit -1), for the Restart= values a unit of ours uses.
func (u unitFile) restarts(exit int, sig syscall.Signal) bool {
	if exit >= 0 && slices.Contains(u.prevent, strconv.Itoa(exit)) {
		return false
	}
	if exit < 0 && (slices.Contains(u.prevent, unixName(sig)) || slices.Contains(u.prevent, strings.TrimPrefix(unixName(sig), "SIG"))) {
		return false
	}
	switch u.restart {
	case "always":
		return true
	case "on-failure":
		if exit >= 0 {
			return exit != 0
		}
		// A clean signal (HUP, INT, TERM, PIPE) is not a failure.
		return sig != syscall.SIGHUP && sig != syscall.SIGINT && sig != syscall.SIGTERM && sig != syscall.SIGPIPE
	case "on-abnormal", "on-abort":
		return exit < 0
	}
	return false
}

// unixName is the signal's name as systemd's RestartPreventExitStatus
// takes it (SIGABRT); a signal without one is SIG and its number.
func unixName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return fmt.Sprintf("SIG%d", int(sig))
}
