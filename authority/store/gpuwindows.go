package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/gpumeter/gpumeter/protocol"
)

// SliceScale is the unit of gpu_windows.total_scaled: 1/SliceScale of a
// GPU-millisecond. 2520 is divisible by every slice denominator from 1 to
// 10 (MIG GPUs have 7 or 8 slices), so a slice-weighted sum is exact.
const SliceScale = 2520

// RecordVerdict is the verifier's judgement of one record that it lets
// through: what billing prices it by and how much of its physical GPU's
// time it takes.
type RecordVerdict struct {
	// Model is the GPU's registered model (the model table's id).
	Model string
	// SliceNum/SliceDen is the unit's share of the GPU by the model table.
	SliceNum, SliceDen int64
	// Weight is how much of the physical GPU one millisecond of the record
	// takes, in 1/SliceScale: SliceScale × SliceNum/SliceDen for usage,
	// idle and most gaps; 0 for time a unit did not exist (device_absent)
	// and for inventory records.
	Weight int64
	// Hold, when set, holds the record's subsidy for review, for this reason.
	Hold string
}

// gpuInterval is one physical GPU's record interval.
type gpuInterval struct {
	gpu        string
	start, end int64
}

// gpuNode is an interval of a GPU's laminar family with its own total and
// the total of everything inside it.
type gpuNode struct {
	start, end int64
	own, added int64 // stored total, this batch's addition
	inside     int64 // own + added + the totals of intervals inside it
	touched    bool  // the batch adds to it or to an interval inside it
}

// addGPUWindows applies the GPU-time rule (package doc) to the batch's
// records and writes the new totals. Every GPU is one node's (node_gpus'
// primary key), so the node's lock, taken first by Ingest, serializes all
// writers of these rows: no lock of their own is needed. (A GPU that moved
// to another node is also written by its old node, which then takes the
// new node's lock as well: loadFacts.)
func (s *Store) addGPUWindows(ctx context.Context, tx *sql.Tx, f *Facts, b *protocol.Batch, vs []RecordVerdict) error {
	sums := map[gpuInterval]int64{}
	span := map[string]int64{}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Kind == protocol.KindInventory {
			continue
		}
		iv := gpuInterval{r.ParentUUID, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli()}
		sums[iv] += r.GPUMillis * vs[i].Weight
		span[iv.gpu] = max(span[iv.gpu], iv.end-iv.start)
	}
	byGPU := map[string][]gpuInterval{}
	for iv := range sums {
		byGPU[iv.gpu] = append(byGPU[iv.gpu], iv)
	}
	gpus := make([]string, 0, len(byGPU))
	for g := range byGPU {
		gpus = append(gpus, g)
	}
	sort.Strings(gpus)
	// An interval that contains a new one starts at most the longest span
	// before it and ends at most that far after: reading that range of
	// each GPU reads every stored interval a new one can touch. One
	// statement for all the batch's GPUs.
	ranges := make([]gpuRange, len(gpus))
	for i, g := range gpus {
		ivs := byGPU[g]
		lo, hi := ivs[0].start, ivs[0].end
		for _, iv := range ivs[1:] {
			lo, hi = min(lo, iv.start), max(hi, iv.end)
		}
		reach := max(f.maxSpan[g], span[g])
		ranges[i] = gpuRange{gpu: g, from: lo - reach, to: hi + reach}
	}
	stored, err := s.storedGPUWindows(ctx, tx, ranges)
	if err != nil {
		return err
	}
	var all []gpuInterval
	for _, g := range gpus {
		ivs := byGPU[g]
		if err := checkGPUWindows(g, stored[g], ivs, sums); err != nil {
			return err
		}
		if span[g] > f.maxSpan[g] {
			s.queue(tx, "record the longest interval of GPU "+g, `UPDATE node_gpus SET max_span_ms = ? WHERE gpu_uuid = ?`, span[g], g)
		}
		all = append(all, ivs...)
	}
	for len(all) > 0 {
		n := min(len(all), windowChunk)
		s.upsertGPUWindows(tx, f.Node, all[:n], sums)
		all = all[n:]
	}
	return nil
}

// gpuRange is the window starts [from, to) of one GPU to read.
type gpuRange struct {
	gpu      string
	from, to int64
}

// storedGPUWindows reads, per GPU, its stored intervals that start in its
// range.
func (s *Store) storedGPUWindows(ctx context.Context, tx *sql.Tx, ranges []gpuRange) (map[string][]gpuNode, error) {
	out := map[string][]gpuNode{}
	if len(ranges) == 0 { // a batch of inventory records only
		return out, nil
	}
	var q strings.Builder
	q.WriteString(`SELECT gpu_uuid, window_start_ms, window_end_ms, total_scaled FROM gpu_windows WHERE `)
	args := make([]any, 0, 3*len(ranges))
	for i, r := range ranges {
		if i > 0 {
			q.WriteString(" OR ")
		}
		q.WriteString("(gpu_uuid = ? AND window_start_ms >= ? AND window_start_ms < ?)")
		args = append(args, r.gpu, r.from, r.to)
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(q.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("read GPU windows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			g string
			n gpuNode
		)
		if err := rows.Scan(&g, &n.start, &n.end, &n.own); err != nil {
			return nil, fmt.Errorf("read GPU windows: %w", err)
		}
		out[g] = append(out[g], n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read GPU windows: %w", err)
	}
	return out, nil
}

// checkGPUWindows: the intervals of one GPU, stored and new, must form a
// laminar family (any two are disjoint or one contains the other), and
// every interval that the batch adds to, or that contains one it adds to,
// must hold at most its length of slice-weighted time, counting everything
// inside it.
func checkGPUWindows(gpu string, stored []gpuNode, ivs []gpuInterval, sums map[gpuInterval]int64) error {
	byKey := make(map[[2]int64]*gpuNode, len(stored)+len(ivs))
	nodes := make([]*gpuNode, 0, len(stored)+len(ivs))
	for i := range stored {
		n := &stored[i]
		byKey[[2]int64{n.start, n.end}] = n
		nodes = append(nodes, n)
	}
	for _, iv := range ivs {
		n := byKey[[2]int64{iv.start, iv.end}]
		if n == nil {
			n = &gpuNode{start: iv.start, end: iv.end}
			byKey[[2]int64{iv.start, iv.end}] = n
			nodes = append(nodes, n)
		}
		n.added += sums[iv]
		n.touched = true
	}
	// Outer intervals first: by start, the longer first.
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].start != nodes[j].start {
			return nodes[i].start < nodes[j].start
		}
		return nodes[i].end > nodes[j].end
	})
	var stack []*gpuNode
	closeTop := func() error {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n.inside += n.own + n.added
		if n.touched && n.inside > (n.end-n.start)*SliceScale {
			return fmt.Errorf("%w: GPU %s, window [%d, %d): its units' slice-weighted time is %s ms, the window is %d ms",
				ErrOverGPUTime, gpu, n.start, n.end, scaledMillis(n.inside), n.end-n.start)
		}
		if len(stack) > 0 {
			p := stack[len(stack)-1]
			p.inside += n.inside
			p.touched = p.touched || n.touched
		}
		return nil
	}
	for _, n := range nodes {
		for len(stack) > 0 && stack[len(stack)-1].end <= n.start {
			if err := closeTop(); err != nil {
				return err
			}
		}
		if len(stack) > 0 && n.end > stack[len(stack)-1].end {
			p := stack[len(stack)-1]
			return fmt.Errorf("%w: GPU %s, window [%d, %d) overlaps window [%d, %d) without containing it or lying inside it",
				ErrOverGPUTime, gpu, n.start, n.end, p.start, p.end)
		}
		stack = append(stack, n)
	}
	for len(stack) > 0 {
		if err := closeTop(); err != nil {
			return err
		}
	}
	return nil
}

// scaledMillis prints a total in 1/SliceScale ms as ms with 3 decimals.
func scaledMillis(v int64) string {
	return fmt.Sprintf("%d.%03d", v/SliceScale, v%SliceScale*1000/SliceScale)
}

// upsertGPUWindows queues the statement that adds the sums of ivs to their
// rows.
func (s *Store) upsertGPUWindows(tx *sql.Tx, node string, ivs []gpuInterval, sums map[gpuInterval]int64) {
	var q strings.Builder
	q.WriteString(`INSERT INTO gpu_windows (gpu_uuid, window_start_ms, window_end_ms, node_id, total_scaled) VALUES `)
	args := make([]any, 0, 5*len(ivs))
	for i, iv := range ivs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, iv.gpu, iv.start, iv.end, node, sums[iv])
	}
	q.WriteString(` ON CONFLICT (gpu_uuid, window_start_ms, window_end_ms) DO UPDATE SET total_scaled = gpu_windows.total_scaled + excluded.total_scaled`)
	s.queue(tx, "add to GPU windows", q.String(), args...)
}

// defaultVerdicts judges a batch with no verifier (the store's own tests):
// the records' own models and slices, nothing held.
func defaultVerdicts(b *protocol.Batch) []RecordVerdict {
	vs := make([]RecordVerdict, len(b.Records))
	for i := range b.Records {
		r := &b.Records[i]
		if r.Kind == protocol.KindInventory || r.SliceDen <= 0 {
			continue
		}
		vs[i] = RecordVerdict{Model: r.Model, SliceNum: int64(r.SliceNum), SliceDen: int64(r.SliceDen)}
		if !(r.Kind == protocol.KindGap && r.GapReason == protocol.GapDeviceAbsent) {
			vs[i].Weight = SliceScale * int64(r.SliceNum) / int64(r.SliceDen)
		}
	}
	return vs
}
