package protocol

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		p          *Problem
		status     int
		typ        string
		wantExpect bool
	}{
		{"gap carries expected_seq", NewProblem(SequenceGap, "d").WithExpected(7), 409, TypeBase + "sequence-gap", true},
		{"422 has none", NewProblem(OverWallTime, "d"), 422, TypeBase + "over-wall-time", false},
		{"unknown cause is internal", NewProblem("no-such-cause", "d"), 500, TypeBase + "internal", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := httptest.NewRecorder()
			WriteProblem(rr, tc.p)
			var got map[string]any
			if err := json.Unmarshal(rr.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if rr.Code != tc.status || rr.Header().Get("Content-Type") != ContentType || got["type"] != tc.typ || got["title"] == "" {
				t.Fatalf("got %d %v", rr.Code, got)
			}
			if _, ok := got["expected_seq"]; ok != tc.wantExpect {
				t.Errorf("expected_seq present = %v, want %v", ok, tc.wantExpect)
			}
			if tc.wantExpect && got["expected_seq"] != float64(7) {
				t.Errorf("expected_seq = %v", got["expected_seq"])
			}
		})
	}
}

// A held refusal says so on the wire, so that an agent that does not know
// the cause still keeps the batch; a final one does not.
func TestHeld(t *testing.T) {
	for cause, want := range map[string]bool{
		GPUNotRegistered: true, UnknownKey: true, FutureWindow: true, WindowNotEnded: true,
		BadSignature: false, Malformed: false, OverGPUTime: false, Fork: false, SecondSigner: false,
	} {
		if Held(cause) != want || NewProblem(cause, "d").Hold != want {
			t.Errorf("%s: Held = %v, Problem.Hold = %v, want %v", cause, Held(cause), NewProblem(cause, "d").Hold, want)
		}
	}
}
