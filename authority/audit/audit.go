// Package audit checks an authority's books without trusting its
// database: Run recomputes, from the stored envelopes and the verifiable
// log alone, every stored record, charge, grant, voucher balance and
// carry, rebuilds the log's tree and checks it against every checkpoint
// the authority signed (docs/operations.md, "Auditing the books");
// Export and Verify make and check the proof files that let a tenant or
// a provider check a statement or a claim against a signed checkpoint
// (docs/protocol.md, "Proof files").
//
// Billing is recomputed by the billing engine itself (billing.Book),
// replaying the log in its order: a voucher's balance at each batch is
// what the log's movements before it left.
package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// Difference is one stored value that the recomputation disagrees with.
type Difference struct {
	Table      string `json:"table"`
	Key        string `json:"key"`
	Column     string `json:"column"`
	Stored     string `json:"stored"`
	Recomputed string `json:"recomputed"`
}

func (d Difference) String() string {
	return fmt.Sprintf("%s [%s] %s: stored %s, recomputed %s", d.Table, d.Key, d.Column, d.Stored, d.Recomputed)
}

// Options bound an audit. From and To (zero: unbounded) limit the
// records, charges and grants compared to those whose window starts in
// [From, To); the log, the vouchers and the carries are cumulative and are
// always checked whole.
type Options struct {
	From, To time.Time
}

func (o Options) inPeriod(windowStartMs string) bool {
	ms, _ := strconv.ParseInt(windowStartMs, 10, 64)
	return (o.From.IsZero() || ms >= o.From.UnixMilli()) && (o.To.IsZero() || ms < o.To.UnixMilli())
}

// Report is what an audit checked and every difference it found.
type Report struct {
	Batches     int          `json:"batches"`
	Records     int          `json:"records"`
	Leaves      int          `json:"leaves"`
	Checkpoints int          `json:"checkpoints"`
	Differences []Difference `json:"differences"`
}

// Clean says whether nothing differs.
func (r Report) Clean() bool { return len(r.Differences) == 0 }

// auditor is one run.
type auditor struct {
	ctx    context.Context
	st     *store.Store
	opt    Options
	rep    Report
	tables map[string][]store.AuditRow
	// batches by their log leaf, from the envelopes (bill replays them).
	byLeaf map[uint64]*protocol.Batch
	leaves []leaf
}

// leaf is a log leaf as rebuilt.
type leaf struct {
	index uint64
	kind  string
	data  []byte
}

func (a *auditor) diff(table, key, column, stored, recomputed string) {
	a.rep.Differences = append(a.rep.Differences, Difference{table, key, column, stored, recomputed})
}

// auditedTables are read once, up front, in one pass each.
var auditedTables = []string{"batches", "records", "charges", "grants", "vouchers", "cost_carries", "subsidy_carries",
	"log_state", "log_leaves", "log_nodes", "log_batches", "log_checkpoints"}

// Run audits the store: it only reads.
func Run(ctx context.Context, st *store.Store, opt Options) (Report, error) {
	a := &auditor{ctx: ctx, st: st, opt: opt, tables: map[string][]store.AuditRow{}, byLeaf: map[uint64]*protocol.Batch{}}
	for _, t := range auditedTables {
		rows, err := st.AuditRows(ctx, t)
		if err != nil {
			return Report{}, err
		}
		a.tables[t] = rows
	}
	started, err := a.checkLog()
	if err != nil {
		return Report{}, err
	}
	if err := a.checkBatches(started); err != nil {
		return Report{}, err
	}
	if err := a.checkBilling(); err != nil {
		return Report{}, err
	}
	if a.rep.Differences == nil {
		a.rep.Differences = []Difference{}
	}
	return a.rep, nil
}

// compare reports every column of cols where stored and want differ.
func (a *auditor) compare(table, key string, stored, want store.AuditRow, cols ...string) {
	for _, c := range cols {
		if stored[c] != want[c] {
			a.diff(table, key, c, quote(stored[c]), quote(want[c]))
		}
	}
}

func quote(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// checkLog rebuilds the tree from log_leaves and checks every leaf hash,
// tree node, checkpoint and the state against it. It returns when the log
// started (Unix ms; -1 when the database keeps no log).
func (a *auditor) checkLog() (int64, error) {
	states := a.tables["log_state"]
	if len(states) == 0 {
		if n := len(a.tables["log_leaves"]); n > 0 {
			a.diff("log_state", "id=1", "row", "absent", fmt.Sprintf("present: log_leaves has %d leaves", n))
		}
		return -1, nil
	}
	state := states[0]
	started, _ := strconv.ParseInt(state["started"], 10, 64)
	v, err := tlog.NewVerifier(state["verifier_key"])
	if err != nil {
		return 0, fmt.Errorf("audit: log_state.verifier_key: %w", err)
	}
	cps := map[uint64]store.AuditRow{}
	for _, r := range a.tables["log_checkpoints"] {
		size, _ := strconv.ParseUint(r["size"], 10, 64)
		cps[size] = r
	}
	a.rep.Checkpoints = len(cps)
	rows := a.tables["log_leaves"]
	a.rep.Leaves = len(rows)
	nodes := map[compact.NodeID][]byte{}
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	checkRoot := func(size uint64) error {
		cp, ok := cps[size]
		if !ok {
			return nil
		}
		root := tlog.EmptyRoot()
		if size > 0 {
			var err error
			if root, err = rng.GetRootHash(nil); err != nil {
				return fmt.Errorf("audit: root of %d leaves: %w", size, err)
			}
		}
		a.checkCheckpoint(v, size, cp, root)
		delete(cps, size)
		return nil
	}
	if err := checkRoot(0); err != nil {
		return 0, err
	}
	for i, r := range rows {
		idx, _ := strconv.ParseUint(r["idx"], 10, 64)
		key := "idx=" + r["idx"]
		if idx != uint64(i) {
			a.diff("log_leaves", "idx="+strconv.Itoa(i), "row", "absent (the next stored leaf is "+r["idx"]+")", "a leaf at every index below the tree's size")
			break
		}
		data, _ := hex.DecodeString(r["data"])
		h := tlog.LeafHash(data)
		if got := hex.EncodeToString(h); got != r["hash"] {
			a.diff("log_leaves", key, "hash", r["hash"], got)
		}
		if err := rng.Append(h, func(id compact.NodeID, h []byte) { nodes[id] = h }); err != nil {
			return 0, fmt.Errorf("audit: append leaf %d: %w", i, err)
		}
		a.leaves = append(a.leaves, leaf{index: idx, kind: r["kind"], data: data})
		if err := checkRoot(idx + 1); err != nil {
			return 0, err
		}
	}
	for size := range cps {
		a.diff("log_checkpoints", "size="+strconv.FormatUint(size, 10), "size",
			strconv.FormatUint(size, 10), fmt.Sprintf("at most %d: the tree has %d leaves", rng.End(), rng.End()))
	}
	if state["size"] != strconv.FormatUint(rng.End(), 10) {
		a.diff("log_state", "id=1", "size", state["size"], strconv.FormatUint(rng.End(), 10))
	}
	if size, root, err := a.st.LogSize(a.ctx); err == nil && size == rng.End() {
		if want, _ := rng.GetRootHash(nil); size > 0 && !bytes.Equal(root, want) {
			a.diff("log_state", "id=1", "compact (root)", hex.EncodeToString(root), hex.EncodeToString(want))
		}
	}
	a.checkNodes(nodes)
	return started, nil
}

// checkCheckpoint checks one kept checkpoint: signed by the log's key,
// for its size, over the rebuilt root.
func (a *auditor) checkCheckpoint(v *tlog.Verifier, size uint64, row store.AuditRow, root []byte) {
	key := "size=" + row["size"]
	note, _ := hex.DecodeString(row["note"])
	cp, err := v.Open(note)
	if err != nil {
		a.diff("log_checkpoints", key, "note", "a note that does not verify ("+err.Error()+")", "a checkpoint signed by "+v.Origin())
		return
	}
	if cp.Size != size {
		a.diff("log_checkpoints", key, "note (size)", strconv.FormatUint(cp.Size, 10), strconv.FormatUint(size, 10))
	}
	if !bytes.Equal(cp.Root, root) {
		a.diff("log_checkpoints", key, "note (root)", hex.EncodeToString(cp.Root), hex.EncodeToString(root))
	}
}

// checkNodes compares log_nodes with the rebuilt tree's complete subtrees.
func (a *auditor) checkNodes(want map[compact.NodeID][]byte) {
	for _, r := range a.tables["log_nodes"] {
		level, _ := strconv.ParseUint(r["level"], 10, 64)
		idx, _ := strconv.ParseUint(r["idx"], 10, 64)
		id := compact.NewNodeID(uint(level), idx)
		key := "level=" + r["level"] + ", idx=" + r["idx"]
		h, ok := want[id]
		switch {
		case !ok:
			a.diff("log_nodes", key, "row", "present", "absent: no such subtree in the rebuilt tree")
		case hex.EncodeToString(h) != r["hash"]:
			a.diff("log_nodes", key, "hash", r["hash"], hex.EncodeToString(h))
		}
		delete(want, id)
	}
	ids := make([]compact.NodeID, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		return ids[i].Level < ids[j].Level || ids[i].Level == ids[j].Level && ids[i].Index < ids[j].Index
	})
	for _, id := range ids {
		if id.Level == 0 {
			continue // leaves' hashes live in log_leaves, checked there
		}
		a.diff("log_nodes", fmt.Sprintf("level=%d, idx=%d", id.Level, id.Index), "row", "absent", hex.EncodeToString(want[id]))
	}
}

// checkBatches opens every stored envelope again with the registry's key
// history, checks its row and its leaf, and recomputes every record row.
func (a *auditor) checkBatches(logStarted int64) error {
	logBatch := map[string]string{}
	for _, r := range a.tables["log_batches"] {
		logBatch[store.AuditKey("log_batches", r)] = r["leaf_idx"]
	}
	want := map[string]store.AuditRow{}
	for _, r := range a.tables["batches"] {
		a.rep.Batches++
		key := store.AuditKey("batches", r)
		env, _ := hex.DecodeString(r["envelope"])
		received, _ := strconv.ParseInt(r["received_at"], 10, 64)
		b, payload, err := ledger.Open(a.ctx, env, a.keys(time.UnixMilli(received)))
		if err != nil {
			if _, ok := ledger.CauseOf(err); !ok && !errors.Is(err, ledger.ErrUnknownKey) {
				return fmt.Errorf("audit: batch %s: %w", key, err)
			}
			a.diff("batches", key, "envelope", "an envelope that does not verify ("+err.Error()+")", "one signed by a key of the node")
			continue
		}
		got := store.AuditRow{"node_id": b.Node, "first_seq": fmt.Sprint(b.FirstSeq), "last_seq": fmt.Sprint(b.LastSeq),
			"key_id": b.KeyID, "hash": protocol.Hash(payload)}
		a.compare("batches", key, r, got, "node_id", "first_seq", "last_seq", "key_id", "hash")
		leafData := tlog.BatchLeaf(b.Node, b.FirstSeq, b.LastSeq, env)
		switch idxS, ok := logBatch[key]; {
		case ok:
			idx, _ := strconv.ParseUint(idxS, 10, 64)
			if idx >= uint64(len(a.leaves)) || !bytes.Equal(a.leaves[idx].data, leafData) {
				stored := "absent"
				if idx < uint64(len(a.leaves)) {
					stored = fmt.Sprintf("%q", a.leaves[idx].data)
				}
				a.diff("log_leaves", "idx="+idxS, "data", stored, fmt.Sprintf("%q (batch %s)", leafData, key))
			} else {
				a.byLeaf[idx] = &b
			}
		case logStarted >= 0 && received >= logStarted:
			a.diff("log_batches", key, "row", "absent", "the leaf of a batch stored after the log started")
		}
		for i := range b.Records {
			rec := &b.Records[i]
			want[rec.ID] = recordRow(&b, rec)
		}
	}
	recordCols := store.AuditColumns("records")
	for _, r := range a.tables["records"] {
		w, ok := want[r["record_id"]]
		delete(want, r["record_id"])
		if !a.opt.inPeriod(r["window_start_ms"]) {
			continue
		}
		a.rep.Records++
		key := "record_id=" + r["record_id"]
		if !ok {
			a.diff("records", key, "row", "present", "absent: in no stored envelope")
			continue
		}
		a.compare("records", key, r, w, recordCols[1:]...)
	}
	for id, w := range want {
		if a.opt.inPeriod(w["window_start_ms"]) {
			a.diff("records", "record_id="+id, "row", "absent", "present in batch node_id="+w["node_id"]+", first_seq="+w["batch_first_seq"])
		}
	}
	return nil
}

// keys is the registry's key history as of a batch's receipt: a key
// revoked later still verified it then.
func (a *auditor) keys(at time.Time) ledger.KeyLookup {
	return func(keyID string) (ed25519.PublicKey, string, bool, error) {
		k, err := a.st.Key(a.ctx, keyID)
		if errors.Is(err, store.ErrKeyNotFound) {
			return nil, "", false, fmt.Errorf("%w: %v", ledger.ErrUnknownKey, err)
		}
		if err != nil {
			return nil, "", false, err
		}
		return k.Public, k.Node, k.RevokedAsOf(at), nil
	}
}

// recordRow is the records row the store writes for r of b (store's
// insertRecords), as text.
func recordRow(b *protocol.Batch, r *protocol.Record) store.AuditRow {
	vals := []any{r.ID, b.Node, r.Seq, b.FirstSeq, r.Provider, r.Tenant, string(r.Kind), r.GPUUUID, r.ParentUUID, r.Model,
		r.MIGProfile, r.SliceNum, r.SliceDen, r.WindowStart.UnixMilli(), r.WindowEnd.UnixMilli(), r.GPUMillis,
		r.UtilizationPercent, r.EnergyMillijoules, r.Attribution, r.SharedWith, r.SplitRule, r.GapReason}
	cols := store.AuditColumns("records")
	row := make(store.AuditRow, len(cols))
	for i, c := range cols {
		row[c] = fmt.Sprint(vals[i])
	}
	return row
}
