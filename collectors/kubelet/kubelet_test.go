package kubelet_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/collectors/kubelet"
	"github.com/gpumeter/gpumeter/collectors/sim/simkubelet"
	"github.com/gpumeter/gpumeter/internal/clock"
)

const (
	gpu0 = "GPU-aaaaaaaa-0000-4000-8000-000000000000"
	gpu1 = "GPU-aaaaaaaa-0000-4000-8000-000000000001"
	mig0 = "MIG-bbbbbbbb-0000-4000-8000-000000000000"
)

// socketPath is a short path: a unix socket's is at most 107 bytes, and
// t.TempDir's can be longer.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pod-resources", "kubelet.sock")
}

type fixture struct {
	srv *simkubelet.Server
	src *kubelet.Source
	clk *clock.Virtual
	// log is written only by the calling goroutine: UnitPods lists
	// synchronously, and gRPC does not write to it.
	log *bytes.Buffer
}

func newFixture(t *testing.T, opts kubelet.Options) *fixture {
	t.Helper()
	srv, err := simkubelet.Start(socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	f := &fixture{srv: srv, clk: clock.NewVirtual(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)), log: &bytes.Buffer{}}
	opts.Socket, opts.Clock = srv.Socket(), f.clk
	opts.Log = slog.New(slog.NewTextHandler(f.log, nil))
	f.src = kubelet.New(opts)
	t.Cleanup(func() { f.src.Close() })
	return f
}

func (f *fixture) holders(t *testing.T) map[string][]attribution.Pod {
	t.Helper()
	return f.src.UnitPods(context.Background())
}

func TestHoldersFromTheRealProtocol(t *testing.T) {
	f := newFixture(t, kubelet.Options{Interval: 5 * time.Second, MaxStale: time.Minute})
	f.srv.Set([]simkubelet.Alloc{
		{Namespace: "team-a", Pod: "train-0", Container: "main", Resource: "nvidia.com/gpu", DeviceIDs: []string{strings.ToUpper(gpu0)}},
		{Namespace: "team-a", Pod: "train-0", Container: "main", Resource: "cpu-thing.example.com/x", DeviceIDs: []string{gpu1}},
		{Namespace: "team-b", Pod: "infer", Container: "srv", Resource: "nvidia.com/mig-1g.10gb", DeviceIDs: []string{mig0}},
		// Time-slicing replicas of one GPU, and an id that is no UUID.
		{Namespace: "team-c", Pod: "nb-1", Container: "jupyter", Resource: "nvidia.com/gpu.shared", DeviceIDs: []string{gpu1 + "::0", "weird"}},
		{Namespace: "team-c", Pod: "nb-2", Container: "jupyter", Resource: "nvidia.com/gpu.shared", DeviceIDs: []string{gpu1 + "::1"}},
	})
	got := f.holders(t)
	want := map[string][]attribution.Pod{
		gpu0: {{Namespace: "team-a", Name: "train-0", Container: "main"}},
		mig0: {{Namespace: "team-b", Name: "infer", Container: "srv"}},
		gpu1: {{Namespace: "team-c", Name: "nb-1", Container: "jupyter"}, {Namespace: "team-c", Name: "nb-2", Container: "jupyter"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("holders:\n got %v\nwant %v", got, want)
	}
	if f.src.State() != kubelet.StateUp || !strings.Contains(f.log.String(), "attribution by namespace from the kubelet") {
		t.Errorf("state %v, log %s", f.src.State(), f.log)
	}
}

// TestListsOncePerInterval: the cache answers between lists, so a pod that
// comes or goes is seen at the first call an interval after the last list.
func TestListsOncePerInterval(t *testing.T) {
	f := newFixture(t, kubelet.Options{Interval: 5 * time.Second, MaxStale: time.Minute})
	a := simkubelet.Alloc{Namespace: "team-a", Pod: "p", Container: "c", Resource: "nvidia.com/gpu", DeviceIDs: []string{gpu0}}
	f.srv.Set([]simkubelet.Alloc{a})
	if len(f.holders(t)) != 1 || f.srv.Lists() != 1 {
		t.Fatalf("first call: %v after %d lists", f.holders(t), f.srv.Lists())
	}
	f.srv.Set(nil) // the pod goes
	f.clk.Advance(4 * time.Second)
	if len(f.holders(t)) != 1 || f.srv.Lists() != 1 {
		t.Fatalf("within the interval: %v after %d lists, want the cached pod and no list", f.holders(t), f.srv.Lists())
	}
	f.clk.Advance(time.Second)
	if h := f.holders(t); len(h) != 0 || f.srv.Lists() != 2 {
		t.Fatalf("after the interval: %v after %d lists, want none after 2", h, f.srv.Lists())
	}
}

// TestMIGMovesBetweenPods: a MIG instance freed by one pod and given to
// another of another namespace changes tenant at the next list.
func TestMIGMovesBetweenPods(t *testing.T) {
	f := newFixture(t, kubelet.Options{})
	attr, err := attribution.New(attribution.Config{Rules: []attribution.Rule{
		{Namespace: "research-*", Tenant: "university"},
		{Namespace: "*", Tenant: "ns-${namespace}"},
	}}, t.TempDir(), attribution.WithPods(f.src))
	if err != nil {
		t.Fatal(err)
	}
	snap := device.Snapshot{Devices: []device.Device{{
		UUID: gpu0, PowerMilliwatts: device.Unknown, EnergyMillijoules: device.Unknown, UtilizationPercent: device.Unknown,
		MIGEnabled: true, Instances: []device.Instance{{UUID: mig0, Profile: "1g.10gb", Slices: 1, TotalSlices: 7,
			Processes: []device.Process{{PID: 4242, SMUtil: device.Unknown}}}},
	}}}
	tenantOf := func() attribution.Share {
		t.Helper()
		obs := attr.Attribute(context.Background(), snap)
		if len(obs) != 1 || len(obs[0].Shares) != 1 {
			t.Fatalf("observations %+v, want one unit with one share", obs)
		}
		return obs[0].Shares[0]
	}
	f.srv.Set([]simkubelet.Alloc{{Namespace: "research-nlp", Pod: "a", Container: "c", Resource: "nvidia.com/mig-1g.10gb", DeviceIDs: []string{mig0}}})
	if s := tenantOf(); s.Tenant != "university" || s.Method != "kubelet" || !reflect.DeepEqual(s.PIDs, []uint32{4242}) {
		t.Fatalf("held by research-nlp: %+v", s)
	}
	f.srv.Set([]simkubelet.Alloc{{Namespace: "acme", Pod: "b", Container: "c", Resource: "nvidia.com/mig-1g.10gb", DeviceIDs: []string{mig0}}})
	if s := tenantOf(); s.Tenant != "ns-acme" {
		t.Fatalf("moved to acme: %+v", s)
	}
	// Freed: no pod holds it, no process rule: the process is unattributed.
	f.srv.Set(nil)
	if s := tenantOf(); s.Tenant != attribution.Unattributed {
		t.Fatalf("freed: %+v", s)
	}
}

// TestSocketGoesAndComesBack: the last list stands in for MaxStale, then
// none; the source retries with backoff and is up again at the first try
// after the socket is back. Each change of state is logged once.
func TestSocketGoesAndComesBack(t *testing.T) {
	f := newFixture(t, kubelet.Options{Interval: time.Second, MaxStale: 10 * time.Second, MaxBackoff: 4 * time.Second})
	f.srv.Set([]simkubelet.Alloc{{Namespace: "team-a", Pod: "p", Container: "c", Resource: "nvidia.com/gpu", DeviceIDs: []string{gpu0}}})
	if len(f.holders(t)) != 1 {
		t.Fatal("no holders while up")
	}
	f.srv.Down()
	tries := []struct {
		after   time.Duration
		state   kubelet.State
		holders int
	}{
		{1 * time.Second, kubelet.StateDown, 1}, // t=1: fails; next try t=2
		{1 * time.Second, kubelet.StateDown, 1}, // t=2: fails; next t=4
		{1 * time.Second, kubelet.StateDown, 1}, // t=3: no try
		{1 * time.Second, kubelet.StateDown, 1}, // t=4: fails; next t=8
		{7 * time.Second, kubelet.StateDown, 0}, // t=11: older than MaxStale; fails; next t=15
	}
	for i, tr := range tries {
		f.clk.Advance(tr.after)
		if h := f.holders(t); len(h) != tr.holders || f.src.State() != tr.state {
			t.Fatalf("step %d: %d holders, state %v; want %d, %v", i, len(h), f.src.State(), tr.holders, tr.state)
		}
	}
	if f.srv.Lists() != 1 {
		t.Errorf("lists answered while down: %d", f.srv.Lists())
	}
	if err := f.srv.Up(); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(3 * time.Second) // t=14: not yet due
	if h := f.holders(t); h != nil {
		t.Fatalf("before the retry is due: %v", h)
	}
	f.clk.Advance(time.Second) // t=15
	if h := f.holders(t); len(h) != 1 || f.src.State() != kubelet.StateUp {
		t.Fatalf("back: %v, state %v", h, f.src.State())
	}
	log := f.log.String()
	for _, want := range []string{"unreachable: the last list stands in", "older than max_stale, dropped", "kubelet pod resources back"} {
		if strings.Count(log, want) != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", want, strings.Count(log, want), log)
		}
	}
}

// TestNoSocketAtStart: without a kubelet the source is down from the first
// call and namespace rules give way to process rules.
func TestNoSocketAtStart(t *testing.T) {
	f := newFixture(t, kubelet.Options{Interval: time.Second})
	f.srv.Down()
	if h := f.holders(t); h != nil || f.src.State() != kubelet.StateDown {
		t.Fatalf("holders %v, state %v", h, f.src.State())
	}
	if !strings.Contains(f.log.String(), "not reachable: namespace rules match nothing") {
		t.Errorf("log: %s", f.log)
	}
}
