package ledger

import (
	"errors"
	"testing"
)

func TestNoDuplicateKeys(t *testing.T) {
	tests := []struct {
		json string
		dup  bool
	}{
		{`{"a":1,"b":2}`, false},
		{`{"a":1,"a":2}`, true},
		{`{"gpu_ms":1,"GPU_MS":2}`, true},
		{`{"gpu_ms":1,"gpu\u005fms":2}`, true},
		{`{"a":{"a":1},"b":{"a":2}}`, false},
		{`{"a":[{"x":1},{"x":2}]}`, false},
		{`{"a":[{"x":1,"x":2}]}`, true},
		{`{"a":"b","c":"a"}`, false},
		{`{"a":"\"}{\"a\":","b":1}`, false},
		{`{"s":"\\","a":1,"a":2}`, true},
		{`[{"a":1},{"a":1}]`, false},
		{`{"a":1,"b":{"c":[1,{"d":2,"d":3}]}}`, true},
		{`{"a":1,"b":{}, "a":3}`, true},
		{`{"a":`, false},   // malformed: the decoder reports it
		{`{"a":"x`, false}, // unterminated
		{`}}]]{"a":1`, false},
	}
	for _, tc := range tests {
		err := noDuplicateKeys([]byte(tc.json))
		if got := errors.Is(err, errDuplicateKey); got != tc.dup {
			t.Errorf("%s: duplicate %v (%v), want %v", tc.json, got, err, tc.dup)
		}
	}
}

func BenchmarkNoDuplicateKeys(b *testing.B) {
	payload := []byte(`{"node":"n","records":[` + repeat(`{"id":"x","seq":1,"node":"n","provider":"p","gpu_ms":60000,"kind":"usage","tenant":"t","utilization_pct":80},`, 199) +
		`{"id":"x","seq":1}]}`)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := noDuplicateKeys(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}
