package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClonedNodeIsRefusedAndTheNodeGoesOn copies a stopped node's whole
// state directory (key, spool, instance) as a VM image copy would, and
// runs both copies at once against one authority. The authority keeps the
// chain it stored first and refuses the other copy's batches as
// second-signer (or, when the other copy's batch arrived first, sees the
// authority's head beyond its own and sends nothing); that copy stops
// signing into the chain and says so,
// while the kept copy delivers to the end. The authority holds exactly
// the kept copy's metered usage, never both copies' (the GPU's time is
// paid once); `node instances` names both copies, and `node unfork`
// clears the flag, in the audit trail.
func TestClonedNodeIsRefusedAndTheNodeGoesOn(t *testing.T) {
	a, n := StartOneNode(t, NodeOptions{Scenario: OneGPU("GPU-e2ec1000-0000-4000-8000-000000000000"), Speed: 200})
	WaitFor(t, time.Minute, "some usage delivered", func() bool { return len(a.Stored(n.ID)) > 5 })
	n.Agent.Stop()

	// The copy: the same state directory on "another host" (its
	// instance.json names this host, so the copy is given its own by
	// removing it, as a different machine-id would).
	c := *n
	base := t.TempDir()
	c.Dir = filepath.Join(base, "state")
	if out, err := exec.Command("cp", "-a", n.Dir, c.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the state directory: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(c.Dir, "instance.json")); err != nil {
		t.Fatal(err)
	}
	c.RecordsFile = filepath.Join(base, "records.jsonl")
	c.Config = filepath.Join(base, "agent.yaml")
	cfg, err := os.ReadFile(n.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.NewReplacer(n.Dir, c.Dir, n.RecordsFile, c.RecordsFile).Replace(string(cfg)))
	if err := os.WriteFile(c.Config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	po := n.Start()
	pc := c.Start()
	// One of the two is refused as a second signer; the other goes on.
	refused := make(chan *Node, 2)
	stop := make(chan struct{})
	defer close(stop)
	for _, x := range []struct {
		node *Node
		p    *Proc
	}{{n, po}, {&c, pc}} {
		go func() {
			for range 600 {
				// Refused as a second signer; or, when the other copy's
				// batch reached the authority before this one sent
				// anything, blocked before sending (the authority's head
				// is beyond what this spool sealed).
				_, signer := x.p.find("ANOTHER COPY")
				_, ahead := x.p.find("authority holds more records than this spool ever sealed")
				if signer || ahead {
					x.node.refusedAsSigner = signer
					refused <- x.node
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond): // polling the copy's log
				}
			}
		}()
	}
	var loser, kept *Node
	select {
	case loser = <-refused:
	case <-time.After(time.Minute):
		t.Fatalf("neither copy was refused as a second signer:\n%s\n---\n%s\n--- the authority:\n%s", notDebug(po), notDebug(pc), a.Proc.Tail(20))
	}
	kept = n
	if loser == n {
		kept = &c
	}
	a.WaitDelivered(kept, 3*time.Minute)
	po.Stop()
	pc.Stop()

	stored := a.Stored(n.ID)
	checkTiled(t, stored)
	SameUsage(t, kept.Metered(), stored, n.End(), nil)

	if !loser.refusedAsSigner {
		// The copy never sent a batch: nothing to flag or clear.
		return
	}
	out := a.MustCLI("node", "instances", "--db", a.DB, "--node", n.ID)
	if strings.Count(out, "\n") < 3 {
		t.Errorf("node instances lists fewer than two copies:\n%s", out)
	}
	a.MustCLI("node", "unfork", "--db", a.DB, "--node", n.ID, "--reason", "copy retired in the test")
	if out := a.MustCLI("audit", "actions", "--db", a.DB, "--node", n.ID); !strings.Contains(out, "unfork") {
		t.Errorf("audit actions does not list the unfork:\n%s", out)
	}
}

// notDebug is a process's log without its debug lines, for failure messages.
func notDebug(p *Proc) string {
	var b strings.Builder
	for _, l := range p.Log() {
		if !strings.Contains(l, `"level":"DEBUG"`) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
