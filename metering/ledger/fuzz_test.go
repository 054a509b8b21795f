package ledger_test

import (
	"context"
	"testing"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// FuzzOpen feeds arbitrary envelope bytes to Open: it must never panic,
// and whatever it accepts must be a structurally valid batch whose hash is
// the hash of the returned payload.
func FuzzOpen(f *testing.F) {
	fx := newFixture(f, "node-01")
	good, err := fx.sealer.Seal(context.Background(), 1, "", records("node-01", 3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Envelope)
	f.Add(good.Envelope[:len(good.Envelope)/2])
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"payloadType":"application/vnd.gpumeter.batch.v1+json","payload":"e30=","signatures":[{"keyid":"x","sig":""}]}`))
	f.Add([]byte(`null`))
	flipped := append([]byte(nil), good.Envelope...)
	flipped[len(flipped)/3] ^= 0x20
	f.Add(flipped)
	f.Add(fx.signRaw(f, protocol.PayloadType, []byte(`{"node":"node-01","records":[{}]}`)))
	f.Add(fx.signRaw(f, protocol.PayloadType, []byte(`{"node":"node-01","key_id":"`+fx.sealer.KeyID()+`","first_seq":1,"last_seq":1,"records":[{"node":"node-01","seq":1,"kind":"idle"}]}`)))

	f.Fuzz(func(t *testing.T, env []byte) {
		b, payload, err := ledger.Open(context.Background(), env, fx.lookup)
		if err != nil {
			if _, ok := ledger.CauseOf(err); !ok {
				t.Fatalf("refusal without a cause: %v", err)
			}
			return
		}
		if b.Node != "node-01" || b.LastSeq != b.FirstSeq+uint64(len(b.Records))-1 || len(payload) == 0 {
			t.Fatalf("accepted an inconsistent batch: %+v", b)
		}
	})
}
