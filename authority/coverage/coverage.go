package coverage

import "time"

// MaxHoles bounds the holes listed per GPU: a node that reported every
// other minute of a month has twenty thousand, and the first hundred say
// as much as all of them.
const MaxHoles = 100

// GPU is one registered GPU's coverage of a period.
type GPU struct {
	GPU        string    `json:"gpu_uuid"`
	Node       string    `json:"node"`
	Provider   string    `json:"provider"`
	Registered time.Time `json:"registered"`
	// From and To are the span the GPU was expected to report (Span):
	// From == To when none of the period is both after its registration
	// and before now.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// ExpectedMillis is To - From; CoveredMillis the part of it the
	// GPU's records cover. The holes are the rest.
	ExpectedMillis int64 `json:"expected_ms"`
	CoveredMillis  int64 `json:"covered_ms"`
	// Holes are the first MaxHoles uncovered intervals, in order;
	// MoreHoles counts those left off.
	Holes     []Hole `json:"holes"`
	MoreHoles int    `json:"more_holes"`
}

// UncoveredMillis is the time of all holes, listed or not.
func (g GPU) UncoveredMillis() int64 { return g.ExpectedMillis - g.CoveredMillis }

// Hole is a maximal interval [From, To) that no record of the GPU covers.
type Hole struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Millis int64     `json:"ms"`
}

// Span is the part of the period [from, to) that a GPU registered at
// registered was expected to report by now, as Unix ms [lo, hi): from its
// registration (if within the period) to now (if within the period). hi ==
// lo when it is empty (registered after the period, or a period not yet
// begun).
func Span(from, to, registered, now time.Time) (lo, hi int64) {
	lo = max(from.UnixMilli(), registered.UnixMilli())
	hi = min(to.UnixMilli(), now.UnixMilli())
	return lo, max(lo, hi)
}

// Tally adds up intervals within [lo, hi). Feed it with Add in order of
// start (the store reads them by the primary key's order); it keeps only
// the covered time, the point covered up to, and the holes it lists.
type Tally struct {
	lo, hi  int64
	reach   int64 // [lo, reach) is decided: covered or listed as holes
	covered int64
	holes   []Hole
	more    int
}

// NewTally starts a tally of [lo, hi) (Unix ms).
func NewTally(lo, hi int64) *Tally {
	return &Tally{lo: lo, hi: max(lo, hi), reach: lo}
}

// Add adds the interval [start, end) (Unix ms). Intervals must come in
// non-decreasing order of start: what lies before the point covered so far
// is decided, so a late interval starting before it adds only what reaches
// beyond. Parts outside [lo, hi) are ignored.
func (t *Tally) Add(start, end int64) {
	start, end = max(start, t.lo), min(end, t.hi)
	if end <= t.reach || end <= start {
		return // empty, outside, or inside what is already covered
	}
	if start > t.reach {
		t.hole(t.reach, start)
		t.reach = start
	}
	t.covered += end - t.reach
	t.reach = end
}

func (t *Tally) hole(from, to int64) {
	if len(t.holes) == MaxHoles {
		t.more++
		return
	}
	t.holes = append(t.holes, Hole{From: msTime(from), To: msTime(to), Millis: to - from})
}

// Fill closes the tally (the time after the last interval is a hole) and
// writes the span, the covered time and the holes into g.
func (t *Tally) Fill(g *GPU) {
	if t.reach < t.hi {
		t.hole(t.reach, t.hi)
		t.reach = t.hi
	}
	g.From, g.To = msTime(t.lo), msTime(t.hi)
	g.ExpectedMillis = t.hi - t.lo
	g.CoveredMillis = t.covered
	g.Holes = t.holes
	if g.Holes == nil {
		g.Holes = []Hole{}
	}
	g.MoreHoles = t.more
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
