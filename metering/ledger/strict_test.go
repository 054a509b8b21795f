package ledger

import (
	"bytes"
	jsonv1 "encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/gpumeter/gpumeter/protocol"
)

// TestStrictUnmarshalDuplicates: a member repeated in any object, at any
// depth, however it is escaped, is errDuplicateKey; the same name in two
// objects is not. Decoded into any, so no member is unknown.
func TestStrictUnmarshalDuplicates(t *testing.T) {
	tests := []struct {
		json string
		dup  bool
	}{
		{`{"a":1,"b":2}`, false},
		{`{"a":1,"a":2}`, true},
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
		{`{"gpu_ms":1,"GPU_MS":2}`, false}, // two names: into a struct, GPU_MS is unknown
	}
	for _, tc := range tests {
		var v any
		err := strictUnmarshal([]byte(tc.json), &v)
		if got := errors.Is(err, errDuplicateKey); got != tc.dup || (err != nil) != tc.dup {
			t.Errorf("%s: duplicate %v (%v), want %v", tc.json, got, err, tc.dup)
		}
	}
}

// TestStrictUnmarshalRefuses: what strictUnmarshal refuses into a Batch,
// not as a duplicate, and the member or place its error names.
func TestStrictUnmarshalRefuses(t *testing.T) {
	tests := []struct {
		name, json string
		unknown    bool   // errors.Is json.ErrUnknownName
		want       string // in the error
	}{
		{"malformed", `{"node":`, false, "EOF"},
		{"unterminated string", `{"node":"x`, false, "EOF"},
		{"closers first", `}}]]{"a":1`, false, "invalid character"},
		{"trailing data", `{"node":"n"} {}`, false, "after top-level value"},
		{"unknown member", `{"node":"n","extra":true}`, true, `"extra"`},
		{"a case variant of a known member", `{"NODE":"n"}`, true, `"NODE"`},
		{"a case variant beside the member", `{"node":"n","Node":"m"}`, true, `"Node"`},
		{"a case variant in a record", `{"records":[{"id":"a"},{"GPU_MS":1}]}`, true, `/records/1`},
		{"invalid UTF-8", "{\"node\":\"n\xff\"}", false, "UTF-8"},
		{"a string for a number", `{"records":[{"gpu_ms":"1"}]}`, false, "/records/0/gpu_ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b protocol.Batch
			err := strictUnmarshal([]byte(tc.json), &b)
			if err == nil || errors.Is(err, errDuplicateKey) {
				t.Fatalf("err = %v, want a refusal other than a duplicate", err)
			}
			if got := errors.Is(err, json.ErrUnknownName); got != tc.unknown {
				t.Errorf("unknown member %v, want %v (%v)", got, tc.unknown, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// TestStrictUnmarshalDecodes: a payload as Seal writes it (v1 encoding)
// decodes to what v1 reads from it.
func TestStrictUnmarshalDecodes(t *testing.T) {
	var b protocol.Batch
	in := `{"node":"n","key_id":"k","first_seq":1,"last_seq":1,"prev_hash":"","created":"2025-03-01T12:00:00.5+01:00",` +
		`"records":[{"id":"r","seq":1,"node":"n","provider":"p","window_start":"2025-03-01T12:00:00Z","window_end":"2025-03-01T12:01:00Z",` +
		`"kind":"usage","tenant":"t\u00e9","gpu_uuid":"g","parent_uuid":"g","model":"m","slice_num":1,"slice_den":1,"gpu_ms":60000,` +
		`"utilization_pct":-1,"energy_mj":-1}]}`
	if err := strictUnmarshal([]byte(in), &b); err != nil {
		t.Fatal(err)
	}
	r := b.Records[0]
	if b.Created.Nanosecond() != 5e8 || r.Tenant != "té" || r.GPUMillis != 60000 || r.UtilizationPercent != -1 ||
		r.WindowEnd.Sub(r.WindowStart).Minutes() != 1 || r.Kind != protocol.KindUsage {
		t.Fatalf("decoded %+v", b)
	}
}

// FuzzStrictUnmarshal: whatever strictUnmarshal accepts, encoding/json
// (v1, strict as before: unknown fields refused) accepts too and reads as
// the same Batch, so no reader of the signed bytes sees other values.
func FuzzStrictUnmarshal(f *testing.F) {
	f.Add([]byte(`{"node":"n","first_seq":1,"records":[{"id":"r","gpu_ms":60000,"window_start":"2025-03-01T12:00:00.5+01:00"}]}`))
	f.Add([]byte(`{"node":"n\u00e9\ud83d\ude00","created":"2025-03-01T12:00:00Z","records":null}`))
	f.Add([]byte(`{"records":[{"inventory":{"gpus":[{"uuid":"u","instances":[{"gi":1}]}]}}]}`))
	f.Add([]byte(`{"node":"a","NODE":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v2 protocol.Batch
		if strictUnmarshal(data, &v2) != nil {
			return
		}
		var v1 protocol.Batch
		dec := jsonv1.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v1); err != nil {
			t.Fatalf("accepted %q, which v1 refuses: %v", data, err)
		}
		a, errA := jsonv1.Marshal(v1)
		b, errB := jsonv1.Marshal(v2)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("%q reads as\n%s (v1)\n%s (v2)", data, a, b)
		}
	})
}

func BenchmarkStrictUnmarshal(b *testing.B) {
	payload := []byte(`{"node":"n","records":[` + strings.Repeat(`{"id":"x","seq":1,"node":"n","provider":"p","gpu_ms":60000,"kind":"usage","tenant":"t","utilization_pct":80},`, 199) +
		`{"id":"x","seq":1}]}`)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var v protocol.Batch
		if err := strictUnmarshal(payload, &v); err != nil {
			b.Fatal(err)
		}
	}
}
