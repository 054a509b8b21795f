package meter

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/protocol"
)

// Defaults for Options' zero values.
const (
	DefaultWindow  = 60 * time.Second
	DefaultMaxHold = 3 * time.Second
)

// Options configure a Meter. Zero Window and MaxHold take the defaults.
type Options struct {
	Node, Provider string
	// Window is the record window; it must divide 24h and be a whole number
	// of milliseconds.
	Window time.Duration
	// MaxHold is the longest an observation describes a unit; the time beyond
	// it until the next observation is a no_sample gap.
	MaxHold time.Duration
}

// TotalsKey names one cumulative counter: Tenant is empty for idle and gap,
// GapReason is set for gaps only.
type TotalsKey struct {
	Tenant    string
	UnitUUID  string
	Kind      protocol.Kind
	GapReason string
}

// Meter integrates observations into records. It is safe for concurrent use;
// Observe and Stop are meant to be called from one loop, Totals from anywhere.
type Meter struct {
	node, provider string
	winMs, holdMs  int64

	mu       sync.Mutex
	started  bool
	stopped  bool
	anchorMs int64
	t0       time.Time
	pos      int64 // the last position reached; never decreases
	// wins[0] is the open window; a fill may extend into later windows until
	// the windows it ends are closed, so between calls len(wins) == 1.
	wins []*window
	held map[string]*heldUnit // the latest observation, by unit UUID
	gen  uint64               // increments per observation, marks held units seen
	// closed sums the emitted records for Totals.
	closed map[TotalsKey]int64

	// Checkpoint state. closedUntil is the end of the last closed window
	// (hasClosed: there is one, or a resumed checkpoint's mark). Between
	// Resume and the first Observe, resumeUnits are the checkpoint's units;
	// the first Observe gives them agent_down gap from closedUntil.
	closedUntil int64
	hasClosed   bool
	resumed     bool
	resumeUnits []unitInfo
	behindMs    int64 // how far the first observation after Resume was before closedUntil

	// Scratch, reused across calls so a steady Observe does not allocate.
	next      map[string]int // unit UUID -> index in the observation being applied
	parts     []part
	weights   []int64
	amounts   []int64
	rems      []uint64
	tis       []int
	uuids     []string
	freeWins  []*window
	freeUnits []*unitAcc
}

// New validates opts and returns a Meter that has seen nothing yet.
func New(opts Options) (*Meter, error) {
	if opts.Node == "" {
		return nil, errors.New("create meter: node name is empty")
	}
	if opts.Window == 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxHold == 0 {
		opts.MaxHold = DefaultMaxHold
	}
	if opts.Window < 0 || opts.Window%time.Millisecond != 0 || (24*time.Hour)%opts.Window != 0 {
		return nil, fmt.Errorf("create meter: window %v must be a whole number of milliseconds that divides 24h", opts.Window)
	}
	if opts.MaxHold < 0 || opts.MaxHold%time.Millisecond != 0 {
		return nil, fmt.Errorf("create meter: max hold %v must be a positive whole number of milliseconds", opts.MaxHold)
	}
	return &Meter{
		node:     opts.Node,
		provider: opts.Provider,
		winMs:    opts.Window.Milliseconds(),
		holdMs:   opts.MaxHold.Milliseconds(),
		held:     make(map[string]*heldUnit),
		closed:   make(map[TotalsKey]int64),
		next:     make(map[string]int),
	}, nil
}

// Observe accounts the time since the previous observation and makes obs the
// held state. It returns the records of every window that t's position
// closes, in record order; nil when none closes. After Stop it does nothing.
func (m *Meter) Observe(t time.Time, obs []attribution.Observation) []protocol.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	if !m.started {
		m.started = true
		m.anchorMs = t.UnixMilli()
		m.t0 = t
		if m.resumed {
			return m.startResumed(obs)
		}
		m.pos = m.anchorMs
		m.wins = append(m.wins[:0], m.newWindow(m.pos, floorDiv(m.pos, m.winMs)*m.winMs+m.winMs))
		m.apply(obs, m.pos, false)
		return nil
	}
	p := m.position(t)
	clear(m.next)
	for i := range obs {
		if obs[i].Unit.UUID != "" {
			m.next[obs[i].Unit.UUID] = i
		}
	}
	m.fill(m.pos, p, obs)
	out := m.closeUpTo(p, nil)
	m.apply(obs, p, p == m.pos)
	m.pos = p
	return out
}

// Stop accounts the time up to t, closes the open window at t's position
// (a partial window) and returns the records of every window it closes.
// The meter then ignores further calls.
func (m *Meter) Stop(t time.Time) []protocol.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped || !m.started {
		m.stopped = true
		return nil
	}
	m.stopped = true
	p := m.position(t)
	clear(m.next)
	m.fill(m.pos, p, nil)
	out := m.closeUpTo(p, nil)
	m.pos = p
	if w := m.wins[0]; w.start < p {
		w.end = p
		out = m.emit(out, w)
	}
	// Accounting is closed at p even when the open window was empty; the
	// held units stay: they are the checkpoint's units.
	m.closedUntil, m.hasClosed = p, true
	for _, w := range m.wins {
		m.release(w)
	}
	m.wins = m.wins[:0]
	return out
}

// Totals returns cumulative milliseconds per key since start: emitted
// records plus what the open window has accumulated so far. Each call
// returns a new map.
func (m *Meter) Totals() map[TotalsKey]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[TotalsKey]int64, len(m.closed)+8)
	for k, v := range m.closed {
		out[k] = v
	}
	for _, w := range m.wins {
		for uuid, acc := range w.units {
			acc.eachTotal(uuid, func(k TotalsKey, ms int64) { out[k] += ms })
		}
	}
	return out
}

// position maps t onto the millisecond timeline, never backwards.
func (m *Meter) position(t time.Time) int64 {
	d := t.Sub(m.t0)
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond < 0 {
		ms--
	}
	return max(m.anchorMs+ms, m.pos)
}

// closeUpTo emits and releases every window that ends at or before p, and
// keeps an open window containing p.
func (m *Meter) closeUpTo(p int64, out []protocol.Record) []protocol.Record {
	end := m.wins[len(m.wins)-1].end
	n := 0
	for n < len(m.wins) && m.wins[n].end <= p {
		out = m.emit(out, m.wins[n])
		m.release(m.wins[n])
		n++
	}
	if n == 0 {
		return out
	}
	k := copy(m.wins, m.wins[n:])
	clear(m.wins[k:])
	m.wins = m.wins[:k]
	if len(m.wins) == 0 {
		m.wins = append(m.wins, m.newWindow(end, end+m.winMs))
	}
	return out
}

// apply makes obs, taken at position p, the held state. A unit new to the
// open window is absent from the window's start to p. sameInstant is true
// when no time passed since the previous observation: an energy baseline
// then carries over so the counter's delta is not lost.
func (m *Meter) apply(obs []attribution.Observation, p int64, sameInstant bool) {
	m.gen++
	w := m.wins[0]
	for i := range obs {
		o := &obs[i]
		if o.Unit.UUID == "" {
			continue
		}
		h := m.held[o.Unit.UUID]
		keepEnergy := false
		if h == nil {
			h = &heldUnit{}
			m.held[o.Unit.UUID] = h
		} else {
			keepEnergy = sameInstant && h.gen != m.gen && !h.lost && h.energy != device.Unknown
		}
		h.set(o, keepEnergy)
		h.gen = m.gen
		if acc, created := m.unitIn(w, &h.info); created && p > w.start {
			acc.gaps[gapAbsent] += p - w.start
		}
	}
	for uuid, h := range m.held {
		if h.gen != m.gen {
			delete(m.held, uuid)
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
