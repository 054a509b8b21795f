package attribution

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// Container ids in the fixture trees (sha256 of a label, see the trees).
const (
	idOllama   = "76e3c7bfe641ea125c0c2e1c5f89349e17b352ed128d528de2443794e7acf870"
	idTriton   = "b7933ed6180d9e2895a9d2df885e2a8b92e998a3c16297581f5b8698daacf492"
	idLegacy   = "c49fea7425fa7f8699897a97c159c6690267d9003bb78c53fafa8fc15c325d84"
	idNotebook = "b53bcf919f24746d72094b8b86c0325cf40723d3d63240705db51a27b261bc96"
	idNerd     = "5cabaa953bd37c3e357e779bb82aa195eda3b2afa2bdd19594a7162c4f7497be"
	idCRI      = "9c787fff147e69b1e6fc5c281348eefef05342d8d6aa28fd12d7938b0cca2e84"
	idCtr      = "2752ea5db34c1dc718967086526c49d5f55793678e2002db3f7a3e45a4a97b2a"
)

// TestAttributeFixtures runs rule sets over the recorded host trees under
// testdata/. want is render()'s output, one line per unit.
func TestAttributeFixtures(t *testing.T) {
	tests := []struct {
		name  string
		tree  string
		rules string
		snap  device.Snapshot
		want  string
	}{
		{
			name: "kubernetes pods on both drivers, docker, and an ssh user",
			tree: "k8s-node",
			rules: `rules:
  - cgroup: kubernetes
    tenant: k8s-${pod_uid}
  - cgroup: docker
    tenant: docker-${container_id}
  - user: ubuntu
    tenant: ops
`,
			snap: snapshot(
				wholeGPU("GPU-0", proc(41002, 20), proc(41001, 60)),
				wholeGPU("GPU-1", proc(42001, -1)),
				wholeGPU("GPU-2", proc(43001, 0)),
				wholeGPU("GPU-3", proc(44001, 5)),
				wholeGPU("GPU-4", proc(45001, 1)),
			),
			want: `GPU-0: [k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41 cgroup:kubernetes w=1 pids=[41001 41002]]
GPU-1: [k8s-9b2e7d10-44aa-4c3b-8f7e-0d1c2b3a4f5e cgroup:kubernetes w=1 pids=[42001]]
GPU-2: [k8s-7d5c4b3a-2e1f-4a0b-9c8d-7e6f5a4b3c2d cgroup:kubernetes w=1 pids=[43001]]
GPU-3: [docker-` + idOllama + ` cgroup:docker w=1 pids=[44001]]
GPU-4: [ops user w=1 pids=[45001]]
`,
		},
		{
			name: "kubernetes qos and container groups",
			tree: "k8s-node",
			rules: `rules:
  - cgroup: kubernetes
    tenant: ${qos}/${container_id}
`,
			snap: snapshot(wholeGPU("GPU-1", proc(42001, -1)), wholeGPU("GPU-2", proc(43001, -1))),
			want: `GPU-1: [guaranteed/` + idTriton + ` cgroup:kubernetes w=1 pids=[42001]]
GPU-2: [besteffort/` + idLegacy + ` cgroup:kubernetes w=1 pids=[43001]]
`,
		},
		{
			name: "static rule beats earlier process rules, on the GPU and its MIG instances",
			tree: "k8s-node",
			rules: `rules:
  - cgroup: kubernetes
    tenant: k8s-${pod_uid}
  - gpu: MIG-b
    tenant: mig-owner
  - gpu: GPU-M
    tenant: reserved
  - gpu: MIG-c
    tenant: never
`,
			snap: snapshot(
				wholeGPU("GPU-0", proc(41001, 10)),
				migGPU("GPU-M", mig("MIG-a", proc(41001, -1), proc(99999, -1)), mig("MIG-b", proc(42001, -1)),
					mig("MIG-c", proc(43001, -1)), mig("MIG-d")),
			),
			want: `GPU-0: [k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41 cgroup:kubernetes w=1 pids=[41001]]
MIG-a: [reserved static w=1 pids=[41001 99999]]
MIG-b: [mig-owner static w=1 pids=[42001]]
MIG-c: [reserved static w=1 pids=[43001]]
MIG-d: idle
`,
		},
		{
			name: "slurm on v2 and v1, users by name and by uid",
			tree: "slurm-node",
			rules: `rules:
  - cgroup: slurm
    tenant: slurm-${job}
  - user: carol
    tenant: lab-${user}
  - uid: 20001
    tenant: ldap-${user}
`,
			snap: snapshot(
				wholeGPU("GPU-0", proc(51001, 40), proc(51002, 40)),
				wholeGPU("GPU-1", proc(52001, 90)),
				wholeGPU("GPU-2", proc(53002, 90)),
				wholeGPU("GPU-3", proc(53001, 90)),
			),
			want: `GPU-0: [slurm-4242 cgroup:slurm w=1 pids=[51001 51002]]
GPU-1: [slurm-77 cgroup:slurm w=1 pids=[52001]]
GPU-2: [lab-carol user w=1 pids=[53002]]
GPU-3: [ldap-20001 user w=1 pids=[53001]]
`,
		},
		{
			name: "slurm step and v1 uid groups; v2 has no uid so the rule does not match",
			tree: "slurm-node",
			rules: `rules:
  - cgroup: slurm
    tenant: ${job}.${step}.${uid}
`,
			snap: snapshot(wholeGPU("GPU-0", proc(51002, -1)), wholeGPU("GPU-1", proc(52001, -1))),
			want: `GPU-0: [unattributed unattributed w=1 pids=[51002]]
GPU-1: [77.0.1001 cgroup:slurm w=1 pids=[52001]]
`,
		},
		{
			name: "shared unit split by utilization",
			tree: "slurm-node",
			rules: `rules:
  - cgroup: slurm
    tenant: slurm-${job}
`,
			snap: snapshot(wholeGPU("GPU-0", proc(51003, 10), proc(51001, 30), proc(51002, 5), proc(53001, 0))),
			want: `GPU-0: split=utilization [slurm-4242 cgroup:slurm w=35 pids=[51001 51002]] [slurm-4250 cgroup:slurm w=10 pids=[51003]] [unattributed unattributed w=1 pids=[53001]]
`,
		},
		{
			// A process without samples (NVML sampled the others, which held
			// the GPU) adds nothing: it no longer forces an equal split on
			// everyone; a tenant with no sample at all keeps weight 1.
			name: "a process without samples weighs nothing; all zero splits equally",
			tree: "slurm-node",
			rules: `rules:
  - cgroup: slurm
    tenant: slurm-${job}
`,
			snap: snapshot(
				wholeGPU("GPU-0", proc(51003, 10), proc(51001, -1), proc(51002, 50)),
				wholeGPU("GPU-1", proc(51003, 0), proc(51001, 0)),
				wholeGPU("GPU-2", proc(51003, 40), proc(51001, -1)),
			),
			want: `GPU-0: split=utilization [slurm-4242 cgroup:slurm w=50 pids=[51001 51002]] [slurm-4250 cgroup:slurm w=10 pids=[51003]]
GPU-1: split=equal [slurm-4242 cgroup:slurm w=1 pids=[51001]] [slurm-4250 cgroup:slurm w=1 pids=[51003]]
GPU-2: split=utilization [slurm-4242 cgroup:slurm w=1 pids=[51001]] [slurm-4250 cgroup:slurm w=40 pids=[51003]]
`,
		},
		{
			name: "one tenant found by two rules carries the earlier rule's method",
			tree: "slurm-node",
			rules: `rules:
  - uid: 1002
    tenant: team
  - cgroup: slurm
    tenant: team
`,
			snap: snapshot(wholeGPU("GPU-0", proc(51001, 10), proc(53002, 10))),
			want: `GPU-0: [team user w=1 pids=[51001 53002]]
`,
		},
		{
			name: "systemd, docker on v1, containerd layouts and a pattern; empty templates fall through",
			tree: "workstation",
			rules: `rules:
  - cgroup: docker
    tenant: docker-${container_id}
  - cgroup: containerd
    tenant: ctr-${container_id}
  - cgroup_pattern: '^/tenant\.slice/tenant-(?P<t>[a-z]+)\.slice/'
    tenant: ${t}
  - cgroup: systemd
    tenant: svc-${instance}
  - cgroup: systemd
    tenant: slice-${slice_leaf}
`,
			snap: snapshot(
				wholeGPU("GPU-0", proc(61001, -1)),
				wholeGPU("GPU-1", proc(61002, -1)),
				wholeGPU("GPU-2", proc(62001, -1)),
				wholeGPU("GPU-3", proc(63001, -1), proc(63002, -1), proc(63003, -1)),
				wholeGPU("GPU-4", proc(64001, -1)),
			),
			want: `GPU-0: [acme cgroup:pattern w=1 pids=[61001]]
GPU-1: [svc-globex cgroup:systemd w=1 pids=[61002]]
GPU-2: [docker-` + idNotebook + ` cgroup:docker w=1 pids=[62001]]
GPU-3: split=equal [ctr-` + idCtr + ` cgroup:containerd w=1 pids=[63003]] [ctr-` + idNerd + ` cgroup:containerd w=1 pids=[63001]] [ctr-` + idCRI + ` cgroup:containerd w=1 pids=[63002]]
GPU-4: [slice-app cgroup:systemd w=1 pids=[64001]]
`,
		},
		{
			name: "unattributed processes are metered, alone and beside a tenant",
			tree: "workstation",
			rules: `rules:
  - user: dave
    tenant: dave
`,
			snap: snapshot(
				wholeGPU("GPU-0", proc(61001, 70)),
				wholeGPU("GPU-1", proc(64001, 30), proc(61002, 60)),
			),
			want: `GPU-0: [unattributed unattributed w=1 pids=[61001]]
GPU-1: split=utilization [dave user w=30 pids=[64001]] [unattributed unattributed w=60 pids=[61002]]
`,
		},
		{
			name: "no rules: everything unattributed",
			tree: "workstation",
			rules: `rules: []
`,
			snap: snapshot(wholeGPU("GPU-0", proc(61001, 70), proc(64001, 10))),
			want: `GPU-0: [unattributed unattributed w=1 pids=[61001 64001]]
`,
		},
		{
			name: "lost unit has no shares even with processes; idle unit has none",
			tree: "k8s-node",
			rules: `rules:
  - cgroup: kubernetes
    tenant: k8s-${pod_uid}
`,
			snap: func() device.Snapshot {
				lost := wholeGPU("GPU-0", proc(41001, 50))
				lost.Err = errors.New("GPU is lost")
				lostMIG := migGPU("GPU-1", mig("MIG-a", proc(42001, 5)))
				lostMIG.Err = errors.New("GPU is lost")
				return snapshot(lost, lostMIG, wholeGPU("GPU-2"))
			}(),
			want: `GPU-0: lost
MIG-a: lost
GPU-2: idle
`,
		},
		{
			name: "a process gone from /proc is unattributed, its tenant mates are not",
			tree: "k8s-node",
			rules: `rules:
  - cgroup: kubernetes
    tenant: k8s-${pod_uid}
`,
			snap: snapshot(wholeGPU("GPU-0", proc(41001, 50), proc(99999, 50)), wholeGPU("GPU-1", proc(88888, 1))),
			want: `GPU-0: split=utilization [k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41 cgroup:kubernetes w=50 pids=[41001]] [unattributed unattributed w=50 pids=[99999]]
GPU-1: [unattributed unattributed w=1 pids=[88888]]
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(mustConfig(t, tt.rules), "testdata/"+tt.tree)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			// Twice: the second call answers from the cache and must agree.
			for call := 1; call <= 2; call++ {
				obs := a.Attribute(context.Background(), tt.snap)
				if got := render(obs); got != tt.want {
					t.Errorf("call %d:\n got:\n%s\nwant:\n%s", call, got, tt.want)
				}
				checkInvariants(t, tt.snap, obs)
			}
		})
	}
}

// checkInvariants checks the Observation contract that the meter relies on.
func checkInvariants(t *testing.T, s device.Snapshot, obs []Observation) {
	t.Helper()
	units := s.Units()
	if len(obs) != len(units) {
		t.Fatalf("%d observations for %d units", len(obs), len(units))
	}
	for i, o := range obs {
		if o.Unit.UUID != units[i].UUID {
			t.Errorf("observation %d is unit %s, want %s (units in order)", i, o.Unit.UUID, units[i].UUID)
		}
		npids := 0
		for j, sh := range o.Shares {
			if sh.Weight < 1 {
				t.Errorf("%s: tenant %s weight %d < 1", o.Unit.UUID, sh.Tenant, sh.Weight)
			}
			if j > 0 && o.Shares[j-1].Tenant >= sh.Tenant {
				t.Errorf("%s: shares not sorted by tenant, one per tenant: %q then %q", o.Unit.UUID, o.Shares[j-1].Tenant, sh.Tenant)
			}
			npids += len(sh.PIDs)
		}
		if !o.Lost() && npids != len(units[i].Processes) {
			t.Errorf("%s: shares hold %d pids, unit has %d processes: a process was dropped", o.Unit.UUID, npids, len(units[i].Processes))
		}
		if (len(o.Shares) > 1) != (o.SplitRule != "") {
			t.Errorf("%s: %d shares with split rule %q", o.Unit.UUID, len(o.Shares), o.SplitRule)
		}
	}
}

func TestAttributeDoesNotReadProcForStaticUnits(t *testing.T) {
	// An empty host root: any /proc read would fail and say unattributed.
	cfg := mustConfig(t, "rules:\n  - gpu: GPU-0\n    tenant: acme\n")
	a, err := New(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	obs := a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(7, 50), proc(3, 50))))
	want := "GPU-0: [acme static w=1 pids=[3 7]]\n"
	if got := render(obs); got != want {
		t.Errorf("got %s want %s", got, want)
	}
	if len(a.cache) != 0 {
		t.Errorf("cache holds %d entries for a static unit, want 0", len(a.cache))
	}
}

func TestMethodsAreContractStrings(t *testing.T) {
	cfg := mustConfig(t, `rules:
  - cgroup_pattern: kubepods
    tenant: p
`)
	a, err := New(cfg, "testdata/k8s-node")
	if err != nil {
		t.Fatal(err)
	}
	obs := a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(41001, 1))))
	if m := obs[0].Shares[0].Method; m != string(MethodCgroup)+":pattern" || !strings.HasPrefix(m, string(MethodCgroup)) {
		t.Errorf("method %q, want cgroup:pattern", m)
	}
}

func TestGoneProcessIsLoggedAtDebug(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(Config{}, "testdata/k8s-node", WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	a.Attribute(context.Background(), snapshot(wholeGPU("GPU-0", proc(99999, 1))))
	var rec struct {
		Level string
		Msg   string
		PID   uint32 `json:"pid"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("want one JSON log record, got %q: %v", buf.String(), err)
	}
	if rec.Level != "DEBUG" || rec.PID != 99999 || !strings.Contains(rec.Msg, "exited") {
		t.Errorf("log record %+v, want a DEBUG record about pid 99999 having exited", rec)
	}
}

// TestStaticRuleMatchesCanonicalUUID: the collector reports canonical
// UUIDs, so a gpu rule written in upper case still names its unit.
func TestStaticRuleMatchesCanonicalUUID(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - gpu: GPU-5C9D0A8E-1F3B-4C7E-9A2D-6E8F0B1C2D3E\n    tenant: acme\n")
	a, err := New(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	obs := a.Attribute(context.Background(), snapshot(wholeGPU("GPU-5c9d0a8e-1f3b-4c7e-9a2d-6e8f0b1c2d3e", proc(7, 50))))
	if got, want := render(obs), "GPU-5c9d0a8e-1f3b-4c7e-9a2d-6e8f0b1c2d3e: [acme static w=1 pids=[7]]\n"; got != want {
		t.Errorf("got %s want %s", got, want)
	}
}
