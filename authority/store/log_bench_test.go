package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// BenchmarkIngestLog measures subsidized usage records stored per second
// with the verifiable log off and on (a batch leaf and one voucher leaf
// per record, and a checkpoint signed per batch, all in the ingest
// transaction): 200-record batches, one voucher paying every record.
func BenchmarkIngestLog(b *testing.B) {
	const gpus, windows = 4, 50
	for _, d := range drivers {
		b.Run(d, func(b *testing.B) {
			for _, on := range []bool{false, true} {
				name := map[bool]string{false: "log_off", true: "log_on"}[on]
				b.Run(name, func(b *testing.B) {
					ctx := context.Background()
					s := openSource(b, d, newSource(b, d))
					if on {
						must(b, s.StartLog(ctx, logSigner(b)))
					}
					billSetup(b, s)
					must(b, s.AddProgram(ctx, testProgram("P1", func(p *billing.Program) { p.CapPerYear = billing.MaxFen })))
					must(b, s.IssueVoucherAt(ctx, testVoucher("v1", "P1", "E1", billing.MaxFen, y2028), y2026))
					n := newBillNode(b, s, "n1")
					b.ResetTimer()
					for i := range b.N {
						b.StopTimer()
						sub := n.minutes(bt.Add(time.Duration(i*windows)*time.Minute), gpus, windows)
						b.StartTimer()
						if _, err := s.Ingest(ctx, sub); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N*gpus*windows)/b.Elapsed().Seconds(), "records/s")
				})
			}
		})
	}
}

// minutes is the node's next batch: acme's full minutes on GPUs 1..gpus
// for windows minutes from start.
func (n *billNode) minutes(start time.Time, gpus, windows int) Submission {
	recs := make([]protocol.Record, 0, gpus*windows)
	for w := range windows {
		for g := 1; g <= gpus; g++ {
			recs = append(recs, n.use(g, start.Add(time.Duration(w)*time.Minute), time.Minute, "acme", 60_000))
		}
	}
	return n.batch(recs...)
}

// BenchmarkLogProof measures an inclusion and a consistency proof read
// from log_nodes and verified, in a SQLite tree of GPUMETER_BENCH_LOG_SIZE
// leaves (default 10 000 000), whose nodes are bulk-inserted from a
// compact range over synthetic leaf hashes (leaves' data are not needed
// for proofs).
func BenchmarkLogProof(b *testing.B) {
	size := uint64(10_000_000)
	if v := os.Getenv("GPUMETER_BENCH_LOG_SIZE"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < 2 {
			b.Fatalf("GPUMETER_BENCH_LOG_SIZE=%q: want an integer >= 2", v)
		}
		size = n
	}
	ctx := context.Background()
	s := openSource(b, DriverSQLite, newSource(b, DriverSQLite))
	built := time.Now()
	rng := rangeFactory.NewEmptyRange(0)
	leafHash := func(i uint64) []byte {
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], i)
		h := sha256.Sum256(buf[:])
		return rfc6962.DefaultHasher.HashLeaf(h[:])
	}
	var rows [][]any
	flush := func(tx *sql.Tx) error {
		s.queueRows(tx, "log nodes", "log_nodes", `level, idx, hash`, rows, nil)
		rows = rows[:0]
		return s.flushQueue(ctx, tx)
	}
	must(b, s.writeTx(ctx, func(tx *sql.Tx) error {
		for i := range size {
			if err := rng.Append(leafHash(i), func(id compact.NodeID, h []byte) {
				rows = append(rows, []any{int64(id.Level), id.Index, h})
			}); err != nil {
				return err
			}
			if len(rows) >= 20_000 {
				if err := flush(tx); err != nil {
					return err
				}
			}
		}
		if err := flush(tx); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO log_state (id, size, compact, verifier_key, started) VALUES (1, ?, ?, 'bench', 0)`,
			size, bytes.Join(rng.Hashes(), nil))
		return err
	}))
	b.Logf("built a %d-leaf tree in %s", size, time.Since(built).Round(time.Second))
	_, root, err := s.LogSize(ctx)
	must(b, err)
	oldSize := size / 3
	oldRng := rangeFactory.NewEmptyRange(0)
	for i := range oldSize {
		must(b, oldRng.Append(leafHash(i), nil))
	}
	oldRoot, err := oldRng.GetRootHash(nil)
	must(b, err)
	var proofBytes int
	b.ResetTimer()
	for i := range b.N {
		idx := uint64(i) * 7919 % size
		p, err := s.InclusionProof(ctx, idx, size)
		must(b, err)
		must(b, proof.VerifyInclusion(rfc6962.DefaultHasher, idx, size, leafHash(idx), p, root))
		c, err := s.ConsistencyProof(ctx, oldSize, size)
		must(b, err)
		must(b, proof.VerifyConsistency(rfc6962.DefaultHasher, oldSize, size, c, oldRoot, root))
		proofBytes = 32 * (len(p) + len(c))
	}
	b.ReportMetric(float64(proofBytes), "proof_bytes")
}
