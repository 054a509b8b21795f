// Package workload makes the bench's synthetic nodes and their usage
// records: each node has its own Ed25519 key and GPU UUIDs, and each
// window of it is what a meter would close on a busy shared node.
//
// Records it makes pass the authority's checks (ownership, wall time,
// identity): they must, or the bench would measure refusals. It never
// talks to an authority itself.
package workload

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// Since is every bench node's registration time: long before any bench
// window, as an operator registering a fleet already in service attests.
var Since = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Provider is every bench node's provider.
const Provider = "bench-cloud"

// RecordsPerGPU is the records of one GPU in one window: two tenants'
// usage (time-sliced) and the idle rest.
const RecordsPerGPU = 3

// Node is a bench node: its id, key and GPUs.
type Node struct {
	ID   string
	Key  ed25519.PrivateKey
	GPUs []string
}

// NewNode makes node number idx with gpus GPUs and a fresh key. Ids and
// GPU UUIDs are distinct across idx, so a fleet registers without clashes.
func NewNode(idx, gpus int) (Node, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Node{}, fmt.Errorf("node %d: generate key: %w", idx, err)
	}
	n := Node{ID: fmt.Sprintf("bench-node-%05d", idx), Key: key, GPUs: make([]string, gpus)}
	for g := range n.GPUs {
		n.GPUs[g] = fmt.Sprintf("GPU-be7c0000-%04x-4000-8000-%012x", g, idx)
	}
	return n, nil
}

// Public is the node's public key.
func (n Node) Public() ed25519.PublicKey { return n.Key.Public().(ed25519.PublicKey) }

// Window is window i of the node, starting at start and width long: on
// every GPU two of tenants used it (5/12 of the window each, tenants
// rotating with g and i) and it idled the rest, so usage + idle is the
// window exactly. tenants must hold at least two names.
func (n Node) Window(start time.Time, width time.Duration, i int, tenants []string) []protocol.Record {
	w := width.Milliseconds()
	use := w * 5 / 12
	out := make([]protocol.Record, 0, len(n.GPUs)*RecordsPerGPU)
	for g, uuid := range n.GPUs {
		base := protocol.Record{
			Node: n.ID, Provider: Provider, WindowStart: start.UTC(), WindowEnd: start.Add(width).UTC(),
			GPUUUID: uuid, ParentUUID: uuid, Model: "NVIDIA H100 80GB HBM3",
			SliceNum: 1, SliceDen: 1, UtilizationPercent: 80,
		}
		for k := range 2 {
			r := base
			// 400 W while a tenant runs: a record's energy is that of its
			// own milliseconds, as the meter apportions it.
			r.Kind, r.Tenant, r.GPUMillis, r.EnergyMillijoules = protocol.KindUsage, tenants[(g+i+k)%len(tenants)], use, 400*use
			r.Attribution, r.SharedWith, r.SplitRule = "cgroup", 1, "utilization"
			r.ID = r.ComputeID()
			out = append(out, r)
		}
		r := base
		r.Kind, r.GPUMillis, r.UtilizationPercent, r.EnergyMillijoules = protocol.KindIdle, w-2*use, -1, 60*(w-2*use)
		r.ID = r.ComputeID()
		out = append(out, r)
	}
	return out
}

// Tenants is n tenant names.
func Tenants(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tenant-%02d", i)
	}
	return out
}

// Inventory is the node's inventory record observed at at: its GPUs whole,
// metered in windows of width, merged (if ever) in 1-hour buckets. An
// agent sends one before its first window; so must a bench node.
func (n Node) Inventory(at time.Time, width time.Duration) protocol.Record {
	inv := protocol.WholeGPUs(width, "NVIDIA H100 80GB HBM3", n.GPUs...)
	inv.MergeWindowMillis = time.Hour.Milliseconds()
	return protocol.InventoryRecord(n.ID, Provider, at, inv)
}
