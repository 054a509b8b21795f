package agent_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestKubernetesNamespacesScenario meters the shipped Kubernetes scenario
// through the simulated kubelet (the real PodResources protocol on a unix
// socket): each tenant to the millisecond, as the file's header says and
// as its jobs imply, across a MIG instance moving between customers and
// the kubelet's restart.
func TestKubernetesNamespacesScenario(t *testing.T) {
	s := sc(t, "../configs/scenarios/kubernetes-namespaces.yaml")
	var logs bytes.Buffer
	var recs []protocol.Record
	err := agent.Simulate(context.Background(), s, agent.SimOptions{
		Node: "n1", Provider: "p1", Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Emit: func(r []protocol.Record) error { recs = append(recs, r...); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	checkWindows(t, recs)
	got := map[string]int64{}
	methods := map[string]bool{}
	for _, r := range recs {
		if r.Kind == protocol.KindUsage {
			got[r.Tenant] += r.GPUMillis
			methods[r.Attribution] = true
		}
	}
	want := map[string]int64{"research": 6_600_000, "acme": 1_800_000}
	if len(got) != len(want) || got["research"] != want["research"] || got["acme"] != want["acme"] {
		t.Errorf("metered %v, want %v", got, want)
	}
	if exp := scenario.Expected(s); exp["research"] != want["research"] || exp["acme"] != want["acme"] {
		t.Errorf("the scenario's jobs imply %v, the header says %v", exp, want)
	}
	if len(methods) != 1 || !methods["kubelet"] {
		t.Errorf("methods %v, want only kubelet", methods)
	}
	for _, line := range []string{"attribution by namespace from the kubelet", "unreachable: the last list stands in", "kubelet pod resources back"} {
		if strings.Count(logs.String(), line) != 1 {
			t.Errorf("log has %q %d times, want once", line, strings.Count(logs.String(), line))
		}
	}
}
