package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

const (
	gpuA = "GPU-00000000-0000-4000-8000-000000000001"
	gpuB = "GPU-00000000-0000-4000-8000-000000000002"
	gpuZ = "GPU-00000000-0000-4000-8000-000000000009"
)

// on is win with its parent set to unit (a whole GPU).
func on(unit string, startS, endS int, tenant string, ms int64) protocol.Record {
	r := win(unit, startS, endS, tenant, ms)
	r.ParentUUID = unit
	return r
}

// as sets the batch's instance id.
func as(instance string, sub Submission) Submission {
	sub.Batch.Instance = instance
	return sub
}

// actionsOf lists node's operator actions as "action by actor", oldest
// first.
func actionsOf(t *testing.T, s *Store, node string) []OperatorAction {
	t.Helper()
	as, err := s.OperatorActions(context.Background(), ActionFilter{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(as)-1; i < j; i, j = i+1, j-1 {
		as[i], as[j] = as[j], as[i]
	}
	return as
}

func actionNames(as []OperatorAction) string {
	var names []string
	for _, a := range as {
		names = append(names, a.Action)
	}
	return strings.Join(names, ", ")
}

// TestSecondSigner: a clone (same key, copied spool) is refused
// second-signer, naming both instances, and flags the node; the
// original's chain goes on; the clone's usage of a window the original
// already delivered is never stored twice, even in a batch that extends
// the head; unfork clears the flag with an audited reason.
func TestSecondSigner(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		k := pubKey(t)
		must(t, s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k, GPUs: GPUsOf("H100-SXM5-80GB", gpuA)}, t0))
		key := signing.KeyID(k)

		b1 := as("orig", batchOf("n1", 1, "", key, on(gpuA, 0, 60, "a", 60000)))
		if _, err := s.Ingest(ctx, b1); err != nil {
			t.Fatal(err)
		}
		// The clone's own batch 1: the same window, another tenant.
		clone := as("copy", batchOf("n1", 1, "", key, on(gpuA, 0, 60, "b", 60000)))
		_, err := s.Ingest(ctx, clone)
		var se *SeqError
		if !errors.As(err, &se) || !errors.Is(err, ErrSecondSigner) || se.Instance != "copy" || se.StoredInstance != "orig" || se.Expected != 2 {
			t.Fatalf("clone's batch: %v (%+v), want second signer copy vs orig, expected 2", err, se)
		}
		if !strings.Contains(err.Error(), `"copy"`) || !strings.Contains(err.Error(), `"orig"`) {
			t.Errorf("detail names not both instances: %v", err)
		}
		// The original goes on while the node is flagged.
		b2 := as("orig", batchOf("n1", 2, b1.Hash, key, on(gpuA, 60, 120, "a", 60000)))
		if res, err := s.Ingest(ctx, b2); err != nil || res.Head != 2 {
			t.Fatalf("original's next batch while flagged: %+v, %v", res, err)
		}
		// A clone that resynced to the head and claims the first window
		// again: the wall-time bound refuses it, nothing is paid twice.
		resync := as("copy", batchOf("n1", 3, b2.Hash, key, on(gpuA, 0, 60, "b", 60000)))
		if _, err := s.Ingest(ctx, resync); !errors.Is(err, ErrOverWallTime) && !errors.Is(err, ErrOverGPUTime) {
			t.Fatalf("clone's window delivered again: %v, want over-wall-time", err)
		}
		rows, err := s.Usage(ctx, UsageFilter{From: t0.Add(-time.Hour), To: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, r := range rows {
			total += r.GPUMs
			if r.Tenant != "a" {
				t.Errorf("usage of the clone's tenant stored: %+v", r)
			}
		}
		if total != 120000 {
			t.Errorf("usage stored = %d ms, want the original's 120000", total)
		}
		// A second signer at head+1 (a copy that fell behind): its
		// prev_hash is its own chain's.
		behind := as("copy", batchOf("n1", 3, clone.Hash, key, on(gpuA, 120, 180, "b", 1000)))
		if _, err := s.Ingest(ctx, behind); !errors.Is(err, ErrSecondSigner) {
			t.Fatalf("copy behind at head+1: %v, want second signer", err)
		}

		ns, err := s.Nodes(ctx, t0.Add(time.Hour))
		if err != nil || len(ns) != 1 || !ns[0].Forked {
			t.Fatalf("node list: %+v, %v; want n1 flagged", ns, err)
		}
		got := map[string][2]int64{}
		for _, in := range ns[0].Instances {
			got[in.ID] = [2]int64{in.Accepted, in.Refused}
		}
		if want := map[string][2]int64{"orig": {2, 0}, "copy": {0, 2}}; len(got) != 2 || got["orig"] != want["orig"] || got["copy"] != want["copy"] {
			t.Errorf("instances (accepted, refused) = %v, want %v", got, want)
		}
		if !ns[0].LastWindowEnd.Equal(t0.Add(120 * time.Second)) {
			t.Errorf("last window end %s, want %s", ns[0].LastWindowEnd, t0.Add(120*time.Second))
		}

		// unfork: a reason is required, and a refused unfork writes no
		// audit row.
		if err := s.Unfork(ctx, "n1", "  ", t0); !errors.Is(err, ErrInvalidRegistration) {
			t.Fatalf("unfork without a reason: %v", err)
		}
		if err := s.Unfork(WithActor(ctx, "alice"), "n1", "the clone is shut down", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.Node(ctx, "n1"); n.Forked {
			t.Error("flag not cleared by unfork")
		}
		if err := s.Unfork(ctx, "n1", "again", t0); !errors.Is(err, ErrNotFlagged) {
			t.Errorf("unfork of an unflagged node: %v, want ErrNotFlagged", err)
		}
		acts := actionsOf(t, s, "n1")
		if got := actionNames(acts); got != "node register, node unfork" {
			t.Fatalf("actions = %q", got)
		}
		u := acts[1]
		var d struct {
			Reason    string     `json:"reason"`
			Instances []Instance `json:"instances"`
		}
		if err := json.Unmarshal(u.Details, &d); err != nil || u.Actor != "alice" || d.Reason != "the clone is shut down" ||
			len(d.Instances) != 2 || !u.At.Equal(t0.Add(time.Hour)) {
			t.Errorf("unfork row %+v (%+v, %v)", u, d, err)
		}
	})
}

// TestRemoveGPU: a GPU removed from one node at a time and added to
// another from then on; the old node's records before the removal are
// still accepted (late), after it refused gpu-not-registered; the new
// node's accepted. Every action is audited; refused ones are not.
func TestRemoveGPU(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		k1, k2 := pubKey(t), pubKey(t)
		must(t, s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: k1, GPUs: GPUsOf("H100-SXM5-80GB", gpuA, gpuB)}, t0))
		must(t, s.RegisterNode(ctx, Registration{ID: "n2", Provider: "p", Key: k2, GPUs: GPUsOf("H100-SXM5-80GB", gpuZ)}, t0))
		key1, key2 := signing.KeyID(k1), signing.KeyID(k2)
		b1 := batchOf("n1", 1, "", key1, on(gpuA, 0, 60, "a", 60000))
		if _, err := s.Ingest(ctx, b1); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Hour)
		for _, bad := range []struct {
			name, node, gpu string
			at              time.Time
		}{
			{"cuts stored usage", "n1", gpuA, t0.Add(30 * time.Second)},
			{"another node's GPU", "n2", gpuA, t0.Add(2 * time.Minute)},
			{"in the future", "n1", gpuA, now.Add(time.Second)},
			{"before its registration", "n1", gpuB, t0.Add(-time.Second)},
		} {
			if err := s.RemoveGPU(ctx, bad.node, bad.gpu, bad.at, now); !errors.Is(err, ErrInvalidRegistration) {
				t.Errorf("remove-gpu %s: %v, want ErrInvalidRegistration", bad.name, err)
			}
		}
		if err := s.RemoveGPU(ctx, "nope", gpuA, t0, now); !errors.Is(err, ErrNodeNotFound) {
			t.Errorf("remove-gpu of an unknown node: %v", err)
		}
		must(t, s.RemoveGPU(ctx, "n1", strings.ToLower(gpuA), t0.Add(2*time.Minute), now))
		if err := s.RemoveGPU(ctx, "n1", gpuA, t0.Add(3*time.Minute), now); !errors.Is(err, ErrInvalidRegistration) {
			t.Errorf("second remove-gpu: %v", err)
		}
		if n, _ := s.Node(ctx, "n1"); len(n.GPUs) != 2 || !n.GPUs[0].Retired.Equal(t0.Add(2*time.Minute)) || !n.GPUs[1].Retired.IsZero() {
			t.Errorf("n1's GPUs %+v, want %s retired at +2m", n.GPUs, gpuA)
		}
		// The listing shows the retirement too, and n1's active key.
		if ns, err := s.Nodes(ctx, now); err != nil || len(ns) != 2 || ns[0].ID != "n1" || len(ns[0].GPUs) != 2 ||
			!ns[0].GPUs[0].Retired.Equal(t0.Add(2*time.Minute)) || !ns[0].GPUs[1].Retired.IsZero() ||
			len(ns[0].ActiveKeys) != 1 || ns[0].ActiveKeys[0] != key1 || len(ns[0].Instances) != 1 {
			t.Errorf("node list after remove-gpu: %+v, %v", ns, err)
		}
		// Registered elsewhere before the removal: refused.
		early := []GPU{{UUID: gpuA, Model: "H100-SXM5-80GB", Registered: t0.Add(time.Minute)}}
		if err := s.AddGPUs(ctx, "n2", early, now); !errors.Is(err, ErrInvalidRegistration) {
			t.Fatalf("add-gpu before the removal: %v", err)
		}
		must(t, s.AddGPUs(ctx, "n2", []GPU{{UUID: gpuA, Model: "H100-SXM5-80GB", Registered: t0.Add(2 * time.Minute)}}, now))

		// n1's late records before the removal: accepted; after: refused.
		b2 := batchOf("n1", 2, b1.Hash, key1, on(gpuA, 60, 120, "a", 60000))
		if _, err := s.Ingest(ctx, b2); err != nil {
			t.Fatalf("n1's records before the removal: %v", err)
		}
		after := batchOf("n1", 3, b2.Hash, key1, on(gpuA, 120, 180, "a", 1000))
		if _, err := s.Ingest(ctx, after); !errors.Is(err, ErrGPUNotRegistered) {
			t.Fatalf("n1's records after the removal: %v, want gpu-not-registered", err)
		}
		// n2's records of its time: accepted.
		if _, err := s.Ingest(ctx, batchOf("n2", 1, "", key2, on(gpuA, 120, 180, "x", 60000))); err != nil {
			t.Fatalf("n2's records of the GPU: %v", err)
		}
		if got := actionNames(actionsOf(t, s, "n1")); got != "node register, node remove-gpu" {
			t.Errorf("n1's actions = %q", got)
		}
		if got := actionNames(actionsOf(t, s, "n2")); got != "node register, node add-gpu" {
			t.Errorf("n2's actions = %q", got)
		}
		for _, a := range actionsOf(t, s, "n1") {
			if !strings.HasPrefix(a.Actor, "user:") {
				t.Errorf("%s actor %q, want the OS user", a.Action, a.Actor)
			}
		}
	})
}

// TestKeyActionsAudited: key rotate and revoke leave an audit row in
// their transaction; a refused revoke leaves none.
func TestKeyActionsAudited(t *testing.T) {
	eachDriver(t, func(t *testing.T, open func(t *testing.T) *Store) {
		ctx := WithActor(context.Background(), "bob")
		s := open(t)
		must(t, s.RegisterNode(ctx, Registration{ID: "n1", Provider: "p", Key: pubKey(t), GPUs: GPUsOf("H100-SXM5-80GB", gpuA)}, t0))
		id, err := s.AddKey(ctx, "n1", pubKey(t), time.Time{}, t0)
		must(t, err)
		must(t, s.RevokeKey(ctx, id, t0.Add(time.Minute)))
		if err := s.RevokeKey(ctx, id, t0.Add(2*time.Minute)); !errors.Is(err, ErrKeyRevoked) {
			t.Fatal(err)
		}
		if _, err := s.AddKey(ctx, "nope", pubKey(t), time.Time{}, t0); !errors.Is(err, ErrNodeNotFound) {
			t.Fatal(err)
		}
		acts := actionsOf(t, s, "n1")
		if got := actionNames(acts); got != "node register, key rotate, key revoke" {
			t.Fatalf("actions = %q", got)
		}
		for _, a := range acts {
			if a.Actor != "bob" || !strings.Contains(string(a.Details), "key_id") {
				t.Errorf("%+v", a)
			}
		}
		all, err := s.OperatorActions(ctx, ActionFilter{Action: ActionKeyRevoke, Limit: 5})
		if err != nil || len(all) != 1 {
			t.Errorf("revokes: %+v, %v", all, err)
		}
	})
}
