package meter

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// ident is u as a checkpoint carries it.
func ident(u device.Unit) device.Unit {
	return device.Unit{UUID: u.UUID, ParentUUID: u.ParentUUID, Model: u.Model, Profile: u.Profile,
		SliceNum: u.SliceNum, SliceDen: u.SliceDen,
		UtilizationPercent: device.Unknown, EnergyMillijoules: device.Unknown}
}

func TestCheckpointRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cp   Checkpoint
	}{
		{"zero", Checkpoint{}},
		{"no units", Checkpoint{ClosedUntil: at(60000)}},
		{"whole GPU and MIG instances", Checkpoint{ClosedUntil: at(45500),
			Units: []device.Unit{ident(g0), ident(mig("MIG-1", "GPU-9")), ident(mig("MIG-2", "GPU-9"))}}},
		{"before the epoch", Checkpoint{ClosedUntil: time.UnixMilli(-1500).UTC()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.cp.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Checkpoint
			if err := got.UnmarshalBinary(raw); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			if !reflect.DeepEqual(got, tc.cp) {
				t.Errorf("round trip of %s:\n got %#v\nwant %#v", raw, got, tc.cp)
			}
		})
	}
}

// The encoding is read by a later agent after an upgrade: pin it.
func TestCheckpointEncoding(t *testing.T) {
	cp := Checkpoint{ClosedUntil: at(60500), Units: []device.Unit{ident(mig("MIG-1", "GPU-9"))}}
	raw, err := cp.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"closed_until":"2025-03-01T12:01:00.5Z","units":[` +
		`{"gpu_uuid":"MIG-1","parent_uuid":"GPU-9","model":"NVIDIA H100 80GB HBM3","mig_profile":"1g.10gb","slice_num":1,"slice_den":7}]}`
	if string(raw) != want {
		t.Errorf("encoding\n got %s\nwant %s", raw, want)
	}
}

func TestCheckpointDecodeRefuses(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantVersion bool // the error wraps ErrCheckpointVersion
	}{
		{name: "unknown version", in: `{"version":2,"closed_until":"2025-03-01T12:01:00Z","units":[]}`, wantVersion: true},
		{name: "version 0", in: `{"version":0,"closed_until":"2025-03-01T12:01:00Z","units":[]}`, wantVersion: true},
		{name: "no version", in: `{"closed_until":"2025-03-01T12:01:00Z","units":[]}`},
		{name: "not JSON", in: `closed_until=60000`},
		{name: "empty", in: ``},
		{name: "unknown field", in: `{"version":1,"closed_until":"2025-03-01T12:01:00Z","units":[],"window_ms":60000}`},
		{name: "unknown unit field", in: `{"version":1,"closed_until":"2025-03-01T12:01:00Z","units":[{"gpu_uuid":"GPU-0","energy_mj":5}]}`},
		{name: "trailing data", in: `{"version":1,"closed_until":"2025-03-01T12:01:00Z","units":[]} {}`},
		{name: "finer than a millisecond", in: `{"version":1,"closed_until":"2025-03-01T12:01:00.0005Z","units":[]}`},
		{name: "unit without a UUID", in: `{"version":1,"closed_until":"2025-03-01T12:01:00Z","units":[{"parent_uuid":"GPU-0"}]}`},
		{name: "unit twice", in: `{"version":1,"closed_until":"2025-03-01T12:01:00Z","units":[{"gpu_uuid":"GPU-0"},{"gpu_uuid":"GPU-0"}]}`},
		{name: "units but nothing closed", in: `{"version":1,"closed_until":"0001-01-01T00:00:00Z","units":[{"gpu_uuid":"GPU-0"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keep := Checkpoint{ClosedUntil: at(1000)}
			cp := keep
			err := cp.UnmarshalBinary([]byte(tc.in))
			if err == nil {
				t.Fatalf("decoded %s as %+v", tc.in, cp)
			}
			if errors.Is(err, ErrCheckpointVersion) != tc.wantVersion {
				t.Errorf("error %v: wraps ErrCheckpointVersion %v, want %v", err, !tc.wantVersion, tc.wantVersion)
			}
			if !reflect.DeepEqual(cp, keep) {
				t.Errorf("a refused decode changed the checkpoint to %+v", cp)
			}
		})
	}
}

func TestResumeRefuses(t *testing.T) {
	valid := Checkpoint{ClosedUntil: at(60000), Units: []device.Unit{ident(g0)}}
	tests := []struct {
		name   string
		before func(m *Meter)
		cp     Checkpoint
	}{
		{name: "after Observe", before: func(m *Meter) { m.Observe(at(0), obs(idle(g1))) }, cp: valid},
		{name: "after Stop", before: func(m *Meter) { m.Stop(at(0)) }, cp: valid},
		{name: "twice", before: func(m *Meter) { _ = m.Resume(valid) }, cp: valid},
		{name: "finer than a millisecond", cp: Checkpoint{ClosedUntil: at(60000).Add(time.Microsecond)}},
		{name: "unit without a UUID", cp: Checkpoint{ClosedUntil: at(60000), Units: []device.Unit{{Model: "x"}}}},
		{name: "unit twice", cp: Checkpoint{ClosedUntil: at(60000), Units: []device.Unit{ident(g0), ident(g0)}}},
		{name: "units but nothing closed", cp: Checkpoint{Units: []device.Unit{ident(g0)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(Options{Node: "n"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.before != nil {
				tc.before(m)
			}
			if err := m.Resume(tc.cp); err == nil {
				t.Fatalf("Resume(%+v) accepted", tc.cp)
			}
		})
	}
}

// Resuming the zero checkpoint (a new node) is a fresh start: no gap, the
// timeline begins at the first observation.
func TestResumeZeroIsFreshStart(t *testing.T) {
	m, err := New(Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	if cp := m.Checkpoint(); cpSummary(cp) != "zero" {
		t.Errorf("checkpoint after resuming zero: %s", cpSummary(cp))
	}
	m.Observe(at(30000), obs(used(g0, "a")))
	recs := m.Stop(at(32000))
	if len(recs) != 1 || summary(recs[0]) != "30000+2000 GPU-0 usage a u50 e-1 static/0/" {
		t.Errorf("records %v", recs)
	}
	if err := m.Resume(Checkpoint{}); err == nil {
		t.Error("Resume after Stop accepted")
	}
}
