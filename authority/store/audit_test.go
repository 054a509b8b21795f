package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRefusals(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
		big := bytes.Repeat([]byte("x"), MaxRefusalEnvelope+10)
		small := []byte(`{"payload":"bm90IGEgYmF0Y2g="}`)
		must(t, s.RecordRefusal(ctx, Refusal{Node: "n1", KeyID: "k1", FirstSeq: 7, Received: at(0), Cause: "over-gpu-time",
			Detail: "GPU time exceeds wall time", Remote: "192.0.2.1:4000"}, big))
		// Unauthenticated: what the sender claimed is not kept.
		must(t, s.RecordRefusal(ctx, Refusal{KeyID: "claimed", FirstSeq: 9, Received: at(1), Cause: "bad-signature",
			Detail: "signature does not verify", Remote: "198.51.100.7:5000"}, small))
		must(t, s.RecordRefusal(ctx, Refusal{Node: "n1", KeyID: "k1", FirstSeq: 8, Received: at(2), Cause: "fork",
			Detail: strings.Repeat("é", maxRefusalText), Remote: "192.0.2.1:4000"}, nil))

		all, err := s.ListRefusals(ctx, RefusalFilter{})
		must(t, err)
		if len(all) != 3 || all[0].Cause != "fork" || all[2].Cause != "over-gpu-time" {
			t.Fatalf("all refusals, newest first: %+v", all)
		}
		first := all[2]
		sum := sha256.Sum256(big)
		if first.SHA256 != hex.EncodeToString(sum[:]) || first.Size != int64(len(big)) || !first.Truncated ||
			first.Envelope != nil || first.Node != "n1" || first.KeyID != "k1" || first.FirstSeq != 7 ||
			!first.Received.Equal(at(0)) || first.Remote != "192.0.2.1:4000" {
			t.Errorf("first refusal as listed: %+v", first)
		}
		full, err := s.Refusal(ctx, first.ID)
		must(t, err)
		if !bytes.Equal(full.Envelope, big[:MaxRefusalEnvelope]) || !full.Truncated {
			t.Errorf("kept envelope: %d bytes, truncated %v; want the first %d", len(full.Envelope), full.Truncated, MaxRefusalEnvelope)
		}
		if u := all[1]; u.Node != "" || u.KeyID != "" || u.FirstSeq != 0 || u.Truncated || u.Size != int64(len(small)) {
			t.Errorf("unauthenticated refusal: %+v", u)
		}
		if u, err := s.Refusal(ctx, all[1].ID); err != nil || !bytes.Equal(u.Envelope, small) {
			t.Errorf("unauthenticated envelope %q, %v", u.Envelope, err)
		}
		if d := all[0].Detail; len(d) > maxRefusalText || !strings.HasPrefix(d, "éé") || strings.ContainsRune(d, '\uFFFD') {
			t.Errorf("a long detail is kept as %d bytes %q...", len(d), d[:8])
		}
		if e, err := s.Refusal(ctx, all[0].ID); err != nil || len(e.Envelope) != 0 || e.Size != 0 {
			t.Errorf("an empty body: %+v, %v", e, err)
		}
		if _, err := s.Refusal(ctx, 999); !errors.Is(err, ErrRefusalNotFound) {
			t.Errorf("an unknown id: %v, want ErrRefusalNotFound", err)
		}

		for _, tc := range []struct {
			name string
			f    RefusalFilter
			want []string // causes, newest first
		}{
			{"node", RefusalFilter{Node: "n1"}, []string{"fork", "over-gpu-time"}},
			{"unauthenticated", RefusalFilter{Unauthenticated: true}, []string{"bad-signature"}},
			{"cause", RefusalFilter{Cause: "over-gpu-time"}, []string{"over-gpu-time"}},
			{"since", RefusalFilter{Since: at(1)}, []string{"fork", "bad-signature"}},
			{"until (exclusive)", RefusalFilter{Until: at(2)}, []string{"bad-signature", "over-gpu-time"}},
			{"limit", RefusalFilter{Limit: 1}, []string{"fork"}},
			{"node and cause", RefusalFilter{Node: "n1", Cause: "bad-signature"}, nil},
			{"unknown node", RefusalFilter{Node: "n2"}, nil},
		} {
			got, err := s.ListRefusals(ctx, tc.f)
			must(t, err)
			var causes []string
			for _, r := range got {
				causes = append(causes, r.Cause)
			}
			if strings.Join(causes, ",") != strings.Join(tc.want, ",") {
				t.Errorf("%s: %v, want %v", tc.name, causes, tc.want)
			}
		}
		if _, err := s.ListRefusals(ctx, RefusalFilter{Node: "n1", Unauthenticated: true}); err == nil {
			t.Error("node and unauthenticated together: no error")
		}
		if err := s.RecordRefusal(ctx, Refusal{Node: "n1", Cause: "fork"}, nil); err == nil {
			t.Error("a refusal without its received time was recorded")
		}
	})
}

// TestRefusalsBound: each node keeps its newest refusals only, and the
// refusals of unauthenticated senders share node "": a flood of garbage
// cannot fill the disk, nor push a node's evidence out.
func TestRefusalsBound(t *testing.T) {
	eachStore(t, func(t *testing.T, ctx context.Context, s *Store) {
		s.refusalCap = 3
		record := func(node string, n int) {
			for i := range n {
				must(t, s.RecordRefusal(ctx, Refusal{Node: node, FirstSeq: uint64(i + 1), Received: t0.Add(time.Duration(i) * time.Second),
					Cause: "malformed", Remote: "192.0.2.1:1"}, []byte{byte(i)}))
			}
		}
		record("n1", 5)
		record("", 20)
		record("n2", 1)
		for _, tc := range []struct {
			f    RefusalFilter
			seqs []uint64
			n    int
		}{
			{RefusalFilter{Node: "n1"}, []uint64{5, 4, 3}, 3},
			{RefusalFilter{Node: "n2"}, []uint64{1}, 1},
			{RefusalFilter{Unauthenticated: true}, []uint64{0, 0, 0}, 3},
		} {
			got, err := s.ListRefusals(ctx, tc.f)
			must(t, err)
			if len(got) != tc.n {
				t.Errorf("%+v: %d refusals kept, want %d", tc.f, len(got), tc.n)
				continue
			}
			for i, r := range got {
				if r.FirstSeq != tc.seqs[i] {
					t.Errorf("%+v: kept %+v, want first_seq %v newest first", tc.f, got, tc.seqs)
					break
				}
			}
		}
		// The unauthenticated ones kept are the newest: bodies 17, 18, 19.
		got, err := s.ListRefusals(ctx, RefusalFilter{Unauthenticated: true})
		must(t, err)
		for i, r := range got {
			full, err := s.Refusal(ctx, r.ID)
			must(t, err)
			if want := byte(19 - i); len(full.Envelope) != 1 || full.Envelope[0] != want {
				t.Errorf("unauthenticated refusal %d: body %v, want [%d]", i, full.Envelope, want)
			}
		}
		var n int
		must(t, s.queryRow(ctx, `SELECT COUNT(*) FROM refusals`).Scan(&n))
		if n != 7 {
			t.Errorf("%d rows in refusals, want 7", n)
		}
	})
}
