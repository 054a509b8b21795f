package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// Facts is what the authority holds about a node, read inside the ingest
// transaction that stores one of its batches (under the node's lock), for
// the verifier (Submission.Verify) to judge the batch by. The verifier
// applies the batch's inventory records to it in order (AddInventory), so
// each record is judged by the inventory in force at its place in the
// chain; the store then writes what they added.
type Facts struct {
	Node, Provider string
	// Now is the authority's time of the request.
	Now time.Time
	// KeyActiveFrom is when the batch's key began to sign windows.
	KeyActiveFrom time.Time
	// GPUs are the node's registered GPUs by canonical UUID.
	GPUs map[string]GPU
	// Window and MergeWindow are the node's declared metering and merge
	// windows (ms) of its latest inventory; Window 0: none reported yet.
	Window, MergeWindow int64

	maxSpan map[string]int64    // per GPU: node_gpus.max_span_ms
	layouts map[string][]Layout // per GPU, by From: the one in force at the batch's first window on
	added   []addedInventory
	// reported: layouts of GPUs the node reported but that are not
	// registered to it, kept apart until they are (reported_layouts).
	reported []reportedLayout
}

type reportedLayout struct {
	seq   uint64
	gpu   string
	model string
	l     Layout
}

// Layout is a GPU's MIG layout from From (Unix ms) until the next one.
type Layout struct {
	From int64
	MIG  bool
	// Instances maps a MIG instance's canonical UUID to its profile.
	Instances map[string]string
}

func (l Layout) same(o Layout) bool {
	return l.MIG == o.MIG && maps.Equal(l.Instances, o.Instances)
}

type addedInventory struct {
	seq      uint64
	recordID string
	observed int64
	window   int64
	merge    int64
	layouts  map[string]Layout // the GPUs whose layout changed
}

// LayoutsDuring returns the layouts of gpu in force at some instant of
// [start, end) (end > start), oldest first; for an instant (start == end),
// the one in force then. None: the node never reported the GPU before end.
func (f *Facts) LayoutsDuring(gpu string, start, end int64) []Layout {
	ls := f.layouts[gpu]
	var out []Layout
	for i, l := range ls {
		until := int64(1<<63 - 1)
		if i+1 < len(ls) {
			until = ls[i+1].From
		}
		if l.From <= start && start < until || l.From > start && l.From < end {
			out = append(out, l)
		}
	}
	return out
}

// Latest is the newest layout of gpu, if any.
func (f *Facts) Latest(gpu string) (Layout, bool) {
	ls := f.layouts[gpu]
	if len(ls) == 0 {
		return Layout{}, false
	}
	return ls[len(ls)-1], true
}

// AddInventory applies an inventory record of the batch: the node's
// windows from now on, and for each GPU a layout from observed on, kept
// only where it differs from the GPU's latest. layouts must name
// registered GPUs; a layout older than the GPU's latest is refused
// (layouts only move forward in time) with ErrLayoutOrder.
func (f *Facts) AddInventory(seq uint64, recordID string, observed, window, merge int64, layouts map[string]Layout) error {
	changed := map[string]Layout{}
	for gpu, l := range layouts {
		if _, ok := f.GPUs[gpu]; !ok {
			return fmt.Errorf("inventory seq %d: GPU %s is not the node's", seq, gpu)
		}
		l.From = observed
		if last, ok := f.Latest(gpu); ok {
			if last.same(l) {
				continue
			}
			if observed <= last.From {
				return fmt.Errorf("%w: inventory seq %d gives GPU %s a new layout at %d, not after its layout of %d",
					ErrLayoutOrder, seq, gpu, observed, last.From)
			}
		}
		f.layouts[gpu] = append(f.layouts[gpu], l)
		changed[gpu] = l
	}
	f.Window, f.MergeWindow = window, merge
	f.added = append(f.added, addedInventory{seq: seq, recordID: recordID, observed: observed, window: window, merge: merge, layouts: changed})
	return nil
}

// AddUnregistered keeps the layout an inventory record (seq, observed at
// Unix ms observed) reported for gpu, a GPU not registered to the node,
// whose model the node gave as model (the authority's model table id).
// Such a layout decides nothing now, but is copied into the GPU's layout
// history when the GPU is registered to this node (AddGPUs,
// RegisterNode): the record that reported it came earlier in the chain
// and is never sent again.
func (f *Facts) AddUnregistered(seq uint64, observed int64, gpu, model string, l Layout) {
	l.From = observed
	f.reported = append(f.reported, reportedLayout{seq: seq, gpu: gpu, model: model, l: l})
}

// loadFacts reads the node's facts for batch b signed by keyID: the key's
// activation (re-read here, FOR SHARE on PostgreSQL, so a revocation
// commits either before this ingest, which then refuses the batch, or
// after it has committed), the GPUs, the latest inventory and the layouts
// in force from the batch's first window on.
func (s *Store) loadFacts(ctx context.Context, tx *sql.Tx, b *protocol.Batch, provider string, now time.Time, clock func() time.Time) (*Facts, error) {
	f := &Facts{Node: b.Node, Provider: provider, Now: now, GPUs: map[string]GPU{},
		maxSpan: map[string]int64{}, layouts: map[string][]Layout{}}
	var (
		active  int64
		revoked sql.NullInt64
	)
	// The node's declared windows come with the key's row: one round trip.
	err := s.queryRowTx(ctx, tx, `SELECT k.active_from_ms, k.revoked_at,
		COALESCE((SELECT i.window_ms FROM node_inventories i WHERE i.node_id = k.node_id ORDER BY i.seq DESC LIMIT 1), 0),
		COALESCE((SELECT i.merge_window_ms FROM node_inventories i WHERE i.node_id = k.node_id ORDER BY i.seq DESC LIMIT 1), 0)
		FROM node_keys k WHERE k.key_id = ? AND k.node_id = ?`+s.forShare(), b.KeyID, b.Node).
		Scan(&active, &revoked, &f.Window, &f.MergeWindow)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key %s of node %q: %w", b.KeyID, b.Node, ErrKeyNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", b.KeyID, err)
	}
	keyNow := now
	if clock != nil {
		// The key row is read (and, on PostgreSQL, share-locked) by now.
		if c := clock(); c.After(now) {
			keyNow = c
		}
	}
	if revoked.Valid && keyNow.UnixMilli() >= revoked.Int64 {
		return nil, fmt.Errorf("%w: key %s of node %q, revoked at %s", ErrRevokedAtIngest, b.KeyID, b.Node,
			time.UnixMilli(revoked.Int64).UTC().Format(time.RFC3339Nano))
	}
	f.KeyActiveFrom = time.UnixMilli(active).UTC()

	// The node's GPUs, and those whose registration to it ended before
	// another node registered them (gpu_past_registrations): the node's
	// records of that time stay valid. A GPU registered to the node now
	// (first) wins over its past registrations; of those, the latest.
	var owners []string
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT gpu_uuid, model, registered_ms, retired_ms, max_span_ms, '' AS past FROM node_gpus WHERE node_id = ?
		UNION ALL
		SELECT p.gpu_uuid, p.model, p.registered_ms, p.retired_ms,
			COALESCE((SELECT g.max_span_ms FROM node_gpus g WHERE g.gpu_uuid = p.gpu_uuid), 0),
			COALESCE((SELECT g.node_id FROM node_gpus g WHERE g.gpu_uuid = p.gpu_uuid), '') AS past
		FROM gpu_past_registrations p WHERE p.node_id = ?
		ORDER BY past, registered_ms DESC`), b.Node, b.Node)
	if err != nil {
		return nil, fmt.Errorf("read GPUs of node %q: %w", b.Node, err)
	}
	for rows.Next() {
		var (
			g         GPU
			reg, span int64
			retired   sql.NullInt64
			owner     string // of a past registration: the GPU's node now
		)
		if err := rows.Scan(&g.UUID, &g.Model, &reg, &retired, &span, &owner); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read GPUs of node %q: %w", b.Node, err)
		}
		if _, ok := f.GPUs[g.UUID]; ok {
			continue
		}
		g.Registered = time.UnixMilli(reg).UTC()
		if retired.Valid {
			g.Retired = msTime(retired.Int64)
		}
		f.GPUs[g.UUID] = g
		f.maxSpan[g.UUID] = span
		if owner != "" && owner != b.Node {
			owners = append(owners, owner)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("read GPUs of node %q: %w", b.Node, err)
	}
	// A GPU's per-GPU totals are written under its node's lock; a GPU that
	// moved on to another node is written by both, so on PostgreSQL this
	// ingest takes that node's lock too (SQLite's one writer needs none).
	if s.d.forUpdate != "" && len(owners) > 0 {
		sort.Strings(owners)
		for i, o := range owners {
			if i > 0 && owners[i-1] == o {
				continue
			}
			if err := s.lockNode(ctx, tx, o); err != nil {
				return nil, fmt.Errorf("lock node %q, which holds a GPU of node %q now: %w", o, b.Node, err)
			}
		}
	}

	// Layouts of the GPUs the batch names (its records' and inventories'),
	// from the one in force at its first window on.
	from := int64(1<<63 - 1)
	named := map[string]bool{}
	for i := range b.Records {
		r := &b.Records[i]
		from = min(from, r.WindowStart.UnixMilli())
		if r.Inventory != nil {
			for _, g := range r.Inventory.GPUs {
				named[g.UUID] = true
			}
		} else {
			named[r.ParentUUID] = true
		}
	}
	var gpus []string
	for g := range named {
		if _, ok := f.GPUs[g]; ok {
			gpus = append(gpus, g)
		}
	}
	sort.Strings(gpus)
	if err := s.loadLayouts(ctx, tx, f, gpus, from); err != nil {
		return nil, err
	}
	return f, nil
}

// loadLayouts reads the layouts of gpus from the one in force at from on,
// in one statement (on PostgreSQL each is a round trip).
func (s *Store) loadLayouts(ctx context.Context, tx *sql.Tx, f *Facts, gpus []string, from int64) error {
	if len(gpus) == 0 {
		return nil
	}
	args := make([]any, 0, len(gpus)+2)
	args = append(args, from, from)
	for _, g := range gpus {
		args = append(args, g)
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT l.gpu_uuid, l.from_ms, l.mig_enabled, i.instance_uuid, i.profile
		FROM gpu_layouts l LEFT JOIN gpu_layout_instances i ON i.gpu_uuid = l.gpu_uuid AND i.from_ms = l.from_ms
		WHERE l.from_ms >= COALESCE((SELECT MAX(x.from_ms) FROM gpu_layouts x WHERE x.gpu_uuid = l.gpu_uuid AND x.from_ms <= ?), ?)
		AND l.gpu_uuid IN `+inList(len(gpus))+`
		ORDER BY l.gpu_uuid, l.from_ms`), args...)
	if err != nil {
		return fmt.Errorf("read layouts of GPUs %v: %w", gpus, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			gpu     string
			at      int64
			mig     bool
			in, pro sql.NullString
		)
		if err := rows.Scan(&gpu, &at, &mig, &in, &pro); err != nil {
			return fmt.Errorf("read layouts of GPUs %v: %w", gpus, err)
		}
		ls := f.layouts[gpu]
		if n := len(ls); n == 0 || ls[n-1].From != at {
			ls = append(ls, Layout{From: at, MIG: mig, Instances: map[string]string{}})
		}
		if in.Valid {
			ls[len(ls)-1].Instances[in.String] = pro.String
		}
		f.layouts[gpu] = ls
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read layouts of GPUs %v: %w", gpus, err)
	}
	return nil
}

// saveInventories writes the inventories the verifier applied and the
// layouts they changed (queued: pipeline.go), and those they reported for
// unregistered GPUs.
func (s *Store) saveInventories(ctx context.Context, tx *sql.Tx, f *Facts) error {
	for _, a := range f.added {
		s.queue(tx, fmt.Sprintf("store inventory seq %d of node %q", a.seq, f.Node),
			`INSERT INTO node_inventories (node_id, seq, observed_ms, window_ms, merge_window_ms, record_id)
			VALUES (?, ?, ?, ?, ?, ?)`, f.Node, a.seq, a.observed, a.window, a.merge, a.recordID)
		gpus := make([]string, 0, len(a.layouts))
		for g := range a.layouts {
			gpus = append(gpus, g)
		}
		sort.Strings(gpus)
		for _, g := range gpus {
			l := a.layouts[g]
			what := fmt.Sprintf("store layout of GPU %s at %d", g, l.From)
			s.queue(tx, what, `INSERT INTO gpu_layouts (gpu_uuid, from_ms, node_id, seq, mig_enabled) VALUES (?, ?, ?, ?, ?)`,
				g, l.From, f.Node, a.seq, l.MIG)
			for in, profile := range l.Instances {
				s.queue(tx, what, `INSERT INTO gpu_layout_instances (gpu_uuid, from_ms, instance_uuid, profile) VALUES (?, ?, ?, ?)`,
					g, l.From, in, profile)
			}
		}
	}
	return s.saveReported(ctx, tx, f)
}

// saveReported keeps the layouts of unregistered GPUs the batch's
// inventories reported (AddUnregistered), each only where it is newer than
// and differs from the latest the node reported for the GPU.
func (s *Store) saveReported(ctx context.Context, tx *sql.Tx, f *Facts) error {
	for _, r := range f.reported {
		var (
			from      int64
			model     string
			mig       bool
			instances string
		)
		err := s.queryRowTx(ctx, tx, `SELECT from_ms, model, mig_enabled, instances FROM reported_layouts
			WHERE node_id = ? AND gpu_uuid = ? ORDER BY from_ms DESC LIMIT 1`, f.Node, r.gpu).Scan(&from, &model, &mig, &instances)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read reported layout of GPU %s: %w", r.gpu, err)
		default:
			var last Layout
			if err := json.Unmarshal([]byte(instances), &last.Instances); err != nil {
				return fmt.Errorf("read reported layout of GPU %s at %d: %w", r.gpu, from, err)
			}
			last.MIG = mig
			if r.l.From <= from || model == r.model && last.same(r.l) {
				continue
			}
		}
		js, err := json.Marshal(r.l.Instances)
		if err != nil {
			return fmt.Errorf("keep reported layout of GPU %s: %w", r.gpu, err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO reported_layouts (node_id, gpu_uuid, from_ms, seq, model, mig_enabled, instances)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, f.Node, r.gpu, r.l.From, r.seq, r.model, r.l.MIG, string(js)); err != nil {
			return fmt.Errorf("keep reported layout of GPU %s at %d: %w", r.gpu, r.l.From, err)
		}
	}
	return nil
}

// adoptReported copies the layouts node reported for g while g was not
// registered to it into g's layout history, in the registration's
// transaction, and drops them from reported_layouts. Only the node's own
// reports count (another node's word on a GPU says nothing about this
// one), only those that gave the model g is registered as (the check an
// inventory of a registered GPU gets), and only those after the GPU's
// latest layout already kept (a GPU registered before, to another node,
// keeps that node's history up to its last layout).
func (s *Store) adoptReported(ctx context.Context, tx *sql.Tx, node string, g GPU) error {
	var latest sql.NullInt64
	if err := s.queryRowTx(ctx, tx, `SELECT MAX(from_ms) FROM gpu_layouts WHERE gpu_uuid = ?`, g.UUID).Scan(&latest); err != nil {
		return fmt.Errorf("read layouts of GPU %s: %w", g.UUID, err)
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT from_ms, seq, model, mig_enabled, instances FROM reported_layouts
		WHERE node_id = ? AND gpu_uuid = ? ORDER BY from_ms`), node, g.UUID)
	if err != nil {
		return fmt.Errorf("read reported layouts of GPU %s: %w", g.UUID, err)
	}
	type row struct {
		seq int64
		l   Layout
	}
	var adopt []row
	for rows.Next() {
		var (
			r         row
			model, js string
		)
		if err := rows.Scan(&r.l.From, &r.seq, &model, &r.l.MIG, &js); err != nil {
			rows.Close()
			return fmt.Errorf("read reported layouts of GPU %s: %w", g.UUID, err)
		}
		if err := json.Unmarshal([]byte(js), &r.l.Instances); err != nil {
			rows.Close()
			return fmt.Errorf("read reported layout of GPU %s at %d: %w", g.UUID, r.l.From, err)
		}
		if model != g.Model || latest.Valid && r.l.From <= latest.Int64 {
			continue
		}
		if n := len(adopt); n > 0 && adopt[n-1].l.same(r.l) {
			continue
		}
		adopt = append(adopt, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("read reported layouts of GPU %s: %w", g.UUID, err)
	}
	// After the rows are closed: PostgreSQL runs one statement at a time
	// on a transaction's connection.
	for _, r := range adopt {
		if _, err := s.exec(ctx, tx, `INSERT INTO gpu_layouts (gpu_uuid, from_ms, node_id, seq, mig_enabled) VALUES (?, ?, ?, ?, ?)`,
			g.UUID, r.l.From, node, r.seq, r.l.MIG); err != nil {
			return fmt.Errorf("store layout of GPU %s at %d: %w", g.UUID, r.l.From, err)
		}
		ins := make([]string, 0, len(r.l.Instances))
		for in := range r.l.Instances {
			ins = append(ins, in)
		}
		sort.Strings(ins)
		for _, in := range ins {
			if _, err := s.exec(ctx, tx, `INSERT INTO gpu_layout_instances (gpu_uuid, from_ms, instance_uuid, profile) VALUES (?, ?, ?, ?)`,
				g.UUID, r.l.From, in, r.l.Instances[in]); err != nil {
				return fmt.Errorf("store layout of GPU %s at %d: %w", g.UUID, r.l.From, err)
			}
		}
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM reported_layouts WHERE node_id = ? AND gpu_uuid = ?`, node, g.UUID); err != nil {
		return fmt.Errorf("drop reported layouts of GPU %s: %w", g.UUID, err)
	}
	return nil
}

// SeedInventory records an inventory for node at at as if the node had
// reported it (seq 0): the operator's own statement of a node's windows
// and layouts, for a node registered from a known build (and for tests
// whose nodes send usage without an inventory of their own). layouts must
// name the node's registered GPUs. A later inventory from the node
// replaces it as usual.
func (s *Store) SeedInventory(ctx context.Context, node string, at time.Time, window, merge time.Duration, layouts map[string]Layout) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		f := &Facts{Node: node, GPUs: map[string]GPU{}, layouts: map[string][]Layout{}}
		rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT gpu_uuid FROM node_gpus WHERE node_id = ?`), node)
		if err != nil {
			return fmt.Errorf("seed inventory of node %q: %w", node, err)
		}
		for rows.Next() {
			var g string
			if err := rows.Scan(&g); err != nil {
				rows.Close()
				return fmt.Errorf("seed inventory of node %q: %w", node, err)
			}
			f.GPUs[g] = GPU{UUID: g}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("seed inventory of node %q: %w", node, err)
		}
		// After the GPU rows are closed: PostgreSQL runs one statement at a
		// time on a transaction's connection.
		gpus := make([]string, 0, len(f.GPUs))
		for g := range f.GPUs {
			gpus = append(gpus, g)
		}
		sort.Strings(gpus)
		if err := s.loadLayouts(ctx, tx, f, gpus, at.UnixMilli()); err != nil {
			return err
		}
		if err := f.AddInventory(0, "", at.UnixMilli(), window.Milliseconds(), merge.Milliseconds(), layouts); err != nil {
			return fmt.Errorf("seed inventory of node %q: %w", node, err)
		}
		return s.saveInventories(ctx, tx, f)
	})
}
