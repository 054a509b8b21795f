package attribution

import (
	"context"
	"testing"
)

// fixedPods is a Pods that always answers the same.
type fixedPods map[string][]Pod

func (f fixedPods) UnitPods(context.Context) map[string][]Pod { return f }

// TestNamespaceRules: the pod holding a unit decides its tenant before any
// process rule, by the first namespace rule matching it; a unit no pod
// holds, or held by pods of two tenants, falls to the process rules; an
// invalid templated tenant is unattributed; an idle unit stays idle.
func TestNamespaceRules(t *testing.T) {
	const (
		g0 = "GPU-00000000-0000-4000-8000-000000000000"
		g1 = "GPU-00000000-0000-4000-8000-000000000001"
		g2 = "GPU-00000000-0000-4000-8000-000000000002"
		g3 = "GPU-00000000-0000-4000-8000-000000000003"
		g4 = "GPU-00000000-0000-4000-8000-000000000004"
		g5 = "GPU-00000000-0000-4000-8000-000000000005"
	)
	h := newFakeHost(t, "root:x:0:0::/root:/bin/sh\n")
	h.proc(7, 100, 0, "/kubepods/pod1234/"+"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	pods := fixedPods{
		g0: {{Namespace: "team-a", Name: "p", Container: "c"}},
		g1: {{Namespace: "team-a", Name: "x", Container: "c"}, {Namespace: "lab", Name: "y", Container: "c"}},
		g2: {{Namespace: "kube-system", Name: "z", Container: "c"}},
		g3: {{Namespace: "unattributed", Name: "u", Container: "c"}},
		g5: {{Namespace: "team-b", Name: "idle", Container: "c"}},
	}
	a, err := New(mustConfig(t, `rules:
  - namespace: team-?
    tenant: team
  - namespace: '[a-z]*'
    tenant: ${namespace}
  - uid: 0
    tenant: root-${uid}
`), h.root, WithPods(pods))
	if err != nil {
		t.Fatal(err)
	}
	got := render(a.Attribute(context.Background(), snapshot(
		wholeGPU(g0, proc(7, -1)), wholeGPU(g1, proc(7, -1)), wholeGPU(g2, proc(7, -1)),
		wholeGPU(g3, proc(7, -1)), wholeGPU(g4, proc(7, -1)), wholeGPU(g5))))
	want := g0 + ": [team kubelet w=1 pids=[7]]\n" +
		g1 + ": [root-0 user w=1 pids=[7]]\n" +
		g2 + ": [kube-system kubelet w=1 pids=[7]]\n" +
		g3 + ": [unattributed unattributed w=1 pids=[7]]\n" +
		g4 + ": [root-0 user w=1 pids=[7]]\n" +
		g5 + ": idle\n"
	if got != want {
		t.Errorf("observations:\n%s\nwant:\n%s", got, want)
	}
}
