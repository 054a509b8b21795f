package protocol_test

import (
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

func TestComputeIDDistinguishesFields(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	base := protocol.Record{Node: "n1", GPUUUID: "GPU-1", WindowStart: t0, WindowEnd: t0.Add(time.Minute), Kind: protocol.KindUsage, Tenant: "acme"}
	variants := map[string]func(r *protocol.Record){
		"node":   func(r *protocol.Record) { r.Node = "n2" },
		"unit":   func(r *protocol.Record) { r.GPUUUID = "GPU-2" },
		"start":  func(r *protocol.Record) { r.WindowStart = r.WindowStart.Add(time.Millisecond) },
		"end":    func(r *protocol.Record) { r.WindowEnd = r.WindowEnd.Add(time.Millisecond) },
		"kind":   func(r *protocol.Record) { r.Kind = protocol.KindIdle },
		"tenant": func(r *protocol.Record) { r.Tenant = "acmf" },
		"reason": func(r *protocol.Record) { r.GapReason = "x" },
		// Length prefixes: moving a character between fields changes the id.
		"boundary": func(r *protocol.Record) { r.Node, r.GPUUUID = "n1G", "PU-1" },
	}
	id := base.ComputeID()
	if len(id) != 32 {
		t.Fatalf("id %q: want 32 hex chars", id)
	}
	if again := base.ComputeID(); again != id {
		t.Fatalf("not deterministic: %s then %s", id, again)
	}
	for name, change := range variants {
		r := base
		change(&r)
		if r.ComputeID() == id {
			t.Errorf("%s: changing it did not change the id", name)
		}
	}
	// What the record measures is not part of its identity.
	r := base
	r.GPUMillis, r.UtilizationPercent = 123, 50
	if r.ComputeID() != id {
		t.Error("gpu_ms changed the id")
	}
}

func BenchmarkComputeID(b *testing.B) {
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	r := protocol.Record{Node: "node-01", GPUUUID: "MIG-5c0b4f3e-1f3c-5d4e-9b7a-3c2d1e0f9a8b", WindowStart: t0, WindowEnd: t0.Add(time.Minute), Kind: protocol.KindUsage, Tenant: "k8s-pod-0f1e2d3c"}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.ComputeID()
	}
}

func TestFormatHours(t *testing.T) {
	for ms, want := range map[int64]string{
		0: "0.000", 3_600_000: "1.000", 5_400_000: "1.500", 3_200_400: "0.889",
		3_599: "0.000", 3_600: "0.001", 36_000_000_000: "10000.000", -5_400_000: "-1.500",
	} {
		if got := protocol.FormatHours(ms); got != want {
			t.Errorf("FormatHours(%d) = %s, want %s", ms, got, want)
		}
	}
}
