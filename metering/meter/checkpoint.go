package meter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// checkpointVersion is the encoding MarshalBinary writes and the only one
// UnmarshalBinary reads. Bump it when the meaning of a field changes.
const checkpointVersion = 1

// ErrCheckpointVersion is wrapped by UnmarshalBinary when the checkpoint was
// written in a version this meter does not know (a newer agent's state).
var ErrCheckpointVersion = errors.New("unknown meter checkpoint version")

// Checkpoint is what a restarted meter needs: how far accounting was closed
// (the end of the last window returned by Observe or Stop, as a UTC ms
// instant) and the identity of the units known then.
//
// The zero Checkpoint means nothing was closed yet; Resume takes it as
// "start fresh".
type Checkpoint struct {
	ClosedUntil time.Time `json:"closed_until"`
	// Units carry identity fields only (UUID, ParentUUID, Model, Profile,
	// SliceNum, SliceDen), sorted by UUID: no processes, no Err, and
	// UtilizationPercent and EnergyMillijoules are device.Unknown.
	Units []device.Unit `json:"units"`
}

// checkpointJSON is the encoding: the unit fields are named as in records,
// and nothing but identity is written.
type checkpointJSON struct {
	Version     int        `json:"version"`
	ClosedUntil time.Time  `json:"closed_until"`
	Units       []unitJSON `json:"units"`
}

type unitJSON struct {
	UUID       string `json:"gpu_uuid"`
	ParentUUID string `json:"parent_uuid"`
	Model      string `json:"model"`
	Profile    string `json:"mig_profile,omitempty"`
	SliceNum   int    `json:"slice_num"`
	SliceDen   int    `json:"slice_den"`
}

// MarshalBinary encodes c as versioned JSON (it is small, and readable in
// the agent's state directory).
func (c Checkpoint) MarshalBinary() ([]byte, error) {
	if _, err := c.units(); err != nil {
		return nil, fmt.Errorf("encode meter checkpoint: %w", err)
	}
	w := checkpointJSON{Version: checkpointVersion, ClosedUntil: c.ClosedUntil.UTC(), Units: make([]unitJSON, 0, len(c.Units))}
	for _, u := range c.Units {
		w.Units = append(w.Units, unitJSON{UUID: u.UUID, ParentUUID: u.ParentUUID, Model: u.Model,
			Profile: u.Profile, SliceNum: u.SliceNum, SliceDen: u.SliceDen})
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode meter checkpoint: %w", err)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote. It is strict: a missing
// or unknown version (ErrCheckpointVersion), unknown fields, trailing data,
// a time finer than a millisecond, and units without a UUID or listed twice
// are errors, and c is left unchanged.
func (c *Checkpoint) UnmarshalBinary(b []byte) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("decode meter checkpoint: %w", err)
	}
	if head.Version == nil {
		return errors.New("decode meter checkpoint: no version")
	}
	if *head.Version != checkpointVersion {
		return fmt.Errorf("decode meter checkpoint: version %d (this meter reads %d): %w",
			*head.Version, checkpointVersion, ErrCheckpointVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w checkpointJSON
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("decode meter checkpoint: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("decode meter checkpoint: data after the checkpoint")
	}
	cp := Checkpoint{ClosedUntil: w.ClosedUntil.UTC()}
	for _, u := range w.Units {
		cp.Units = append(cp.Units, device.Unit{UUID: u.UUID, ParentUUID: u.ParentUUID, Model: u.Model,
			Profile: u.Profile, SliceNum: u.SliceNum, SliceDen: u.SliceDen,
			UtilizationPercent: device.Unknown, EnergyMillijoules: device.Unknown})
	}
	if _, err := cp.units(); err != nil {
		return fmt.Errorf("decode meter checkpoint: %w", err)
	}
	*c = cp
	return nil
}

// units validates c and returns its units' identities sorted by UUID.
func (c Checkpoint) units() ([]unitInfo, error) {
	if c.ClosedUntil.IsZero() {
		if len(c.Units) > 0 {
			return nil, errors.New("checkpoint lists units but closes nothing")
		}
		return nil, nil
	}
	if ms := c.ClosedUntil.UnixMilli(); !c.ClosedUntil.Equal(time.UnixMilli(ms)) {
		return nil, fmt.Errorf("checkpoint closed_until %v is not a whole millisecond", c.ClosedUntil)
	}
	infos := make([]unitInfo, 0, len(c.Units))
	for _, u := range c.Units {
		if u.UUID == "" {
			return nil, errors.New("checkpoint lists a unit without a UUID")
		}
		infos = append(infos, unitInfo{uuid: u.UUID, parent: u.ParentUUID, model: u.Model,
			profile: u.Profile, sliceNum: u.SliceNum, sliceDen: u.SliceDen})
	}
	slices.SortFunc(infos, func(a, b unitInfo) int { return strings.Compare(a.uuid, b.uuid) })
	for i := 1; i < len(infos); i++ {
		if infos[i].uuid == infos[i-1].uuid {
			return nil, fmt.Errorf("checkpoint lists unit %s twice", infos[i].uuid)
		}
	}
	return infos, nil
}

// Checkpoint returns the meter's state for a restart, consistent with
// exactly the records Observe and Stop have returned so far: save it
// together with them (call it from the loop that calls Observe, after
// handling their records). Its units are those of the latest observation
// (at Stop: the last one before it); before Resume's first observation,
// the resumed checkpoint's. It is the zero Checkpoint until a window has
// closed (or Stop was called, or a non-zero checkpoint was resumed).
func (m *Meter) Checkpoint() Checkpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hasClosed {
		return Checkpoint{}
	}
	cp := Checkpoint{ClosedUntil: time.UnixMilli(m.closedUntil).UTC()}
	infos := m.resumeUnits
	if m.started {
		infos = make([]unitInfo, 0, len(m.held))
		for _, h := range m.held {
			infos = append(infos, h.info)
		}
		slices.SortFunc(infos, func(a, b unitInfo) int { return strings.Compare(a.uuid, b.uuid) })
	}
	for _, in := range infos {
		cp.Units = append(cp.Units, device.Unit{UUID: in.uuid, ParentUUID: in.parent, Model: in.model,
			Profile: in.profile, SliceNum: in.sliceNum, SliceDen: in.sliceDen,
			UtilizationPercent: device.Unknown, EnergyMillijoules: device.Unknown})
	}
	return cp
}

// Resume makes a new meter continue a previous run's timeline from cp: the
// first Observe then accounts the time since cp.ClosedUntil as agent_down
// (see "Checkpoint and restart" in the package doc). It must be called at
// most once, before the first Observe. The zero Checkpoint changes nothing.
func (m *Meter) Resume(cp Checkpoint) error {
	infos, err := cp.units()
	if err != nil {
		return fmt.Errorf("resume meter: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.started || m.stopped:
		return errors.New("resume meter: it has already observed or stopped; resume before the first Observe")
	case m.resumed:
		return errors.New("resume meter: it has already resumed a checkpoint")
	case cp.ClosedUntil.IsZero():
		return nil
	}
	m.resumed = true
	m.resumeUnits = infos
	m.closedUntil, m.hasClosed = cp.ClosedUntil.UnixMilli(), true
	return nil
}

// ClockBehind is how far the wall clock of the first observation after
// Resume was before the checkpoint's ClosedUntil; 0 normally. When it is
// positive the timeline was anchored at ClosedUntil instead, so the records
// run ahead of the wall clock by this much for the rest of the run.
func (m *Meter) ClockBehind() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Duration(m.behindMs) * time.Millisecond
}

// startResumed is the first Observe after Resume; m.anchorMs and m.t0 hold
// the observation's wall time. The timeline starts at c = closedUntil: the
// checkpointed units are down on [c, p), the windows that span ends are
// emitted, and obs is applied at p.
func (m *Meter) startResumed(obs []attribution.Observation) []protocol.Record {
	c, p := m.closedUntil, m.anchorMs
	if p < c {
		// The wall clock went back across the restart: meter on from c, so
		// no window already closed is metered again.
		m.behindMs = c - p
		m.anchorMs, p = c, c
	}
	m.pos = c
	m.wins = append(m.wins[:0], m.newWindow(c, floorDiv(c, m.winMs)*m.winMs+m.winMs))
	var out []protocol.Record
	for w := m.wins[0]; ; w = m.wins[0] {
		if s, e := max(c, w.start), min(p, w.end); s < e {
			for i := range m.resumeUnits {
				u, _ := m.unitIn(w, &m.resumeUnits[i])
				u.gaps[gapDown] += e - s
			}
		}
		if w.end > p {
			break
		}
		out = m.emit(out, w)
		m.release(w)
		m.wins[0] = m.newWindow(w.end, w.end+m.winMs)
	}
	m.resumeUnits = nil
	m.apply(obs, p, false)
	m.pos = p
	return out
}
