package bench_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/bench/internal/workload"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// signBatchSizes are a live node's batch (one window of a DGX-like node:
// 8 GPUs x 3 records) and the reporter's default batch when it drains a
// backlog (reporter.DefaultMaxBatchRecords).
var signBatchSizes = []int{24, 1000}

// BenchmarkSign is records signed per second on the agent's path (ledger
// Sealer: JSON payload, DSSE pre-authentication encoding, Ed25519 through
// signing.Signer, base64 and the envelope's JSON) beside the limit: a bare
// ed25519.Sign loop over messages of the same size as that encoding.
func BenchmarkSign(b *testing.B) {
	for _, n := range signBatchSizes {
		node, recs := signRecords(b, n)
		sealer, err := ledger.NewSealer(node.ID, node.Key, time.Now)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.Run(fmt.Sprintf("seal/records=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := sealer.Seal(ctx, uint64(i*n+1), "", recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
		s, err := sealer.Seal(ctx, 1, "", recs)
		if err != nil {
			b.Fatal(err)
		}
		pae := paeOf(b, s.Envelope)
		b.Run(fmt.Sprintf("ed25519/records=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ed25519.Sign(node.Key, pae)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(len(pae)), "message-bytes")
		})
	}
}

// signRecords is n records of one bench node: whole windows, the last cut
// short when n is not a multiple of a window.
func signRecords(tb testing.TB, n int) (workload.Node, []protocol.Record) {
	tb.Helper()
	node, err := workload.NewNode(0, 8)
	if err != nil {
		tb.Fatal(err)
	}
	tenants := workload.Tenants(10)
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var recs []protocol.Record
	for i := 0; len(recs) < n; i++ {
		recs = append(recs, node.Window(start.Add(time.Duration(i)*time.Minute), time.Minute, i, tenants)...)
	}
	return node, recs[:n]
}

// paeOf is the DSSE pre-authentication encoding an envelope's signature
// covers: what ed25519.Sign was given on the agent's path.
func paeOf(tb testing.TB, envelope []byte) []byte {
	tb.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		tb.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		tb.Fatal(err)
	}
	return dsse.PAE(env.PayloadType, payload)
}
