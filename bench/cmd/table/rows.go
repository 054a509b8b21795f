package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// cell is one row of the table, rendered.
type cell struct {
	what, median, spread, peer, ratio string
	runs                              int
}

// row renders itself from the results; ok is false when its benchmark did
// not run.
type row interface {
	render(r results) (c cell, ok bool)
	label() string
}

// series names one benchmark's values of one unit. A name ending in "/"
// is a prefix: the first benchmark under it is taken (the fleet's and the
// drain's names carry their sizes).
type series struct{ bench, unit string }

func (s series) resolve(r results) string {
	if !strings.HasSuffix(s.bench, "/") {
		return s.bench
	}
	var names []string
	for name := range r {
		if strings.HasPrefix(name, s.bench) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return s.bench
	}
	return names[0]
}

func (s series) get(r results) (summary, string, bool) {
	name := s.resolve(r)
	sum, ok := r.get(name, s.unit)
	return sum, name, ok
}

// param is the value of key=... in a benchmark name ("" if absent).
func param(name, key string) string {
	for _, part := range strings.Split(name, "/") {
		if v, ok := strings.CutPrefix(part, key+"="); ok {
			return v
		}
	}
	return ""
}

// measured is a row of one series, with an optional peer series (ratio
// value/peer) or an optional fixed limit.
type measured struct {
	what      string // may hold {nodes}, {windows}, {replicas}: filled from the benchmark name
	value     series
	scale     float64 // the value is multiplied by it (0: 1)
	format    func(float64) string
	peer      *series
	limit     float64 // a fixed peer when peer is nil (0: none)
	peerLabel string  // what the peer or limit is
	ratio     func(value, peer float64) string
}

func (m measured) render(r results) (cell, bool) {
	s, name, ok := m.value.get(r)
	if !ok {
		return cell{}, false
	}
	k := m.scale
	if k == 0 {
		k = 1
	}
	what := strings.NewReplacer("{nodes}", group(param(name, "nodes")), "{windows}", group(param(name, "windows")),
		"{replicas}", param(name, "replicas")).Replace(m.what)
	c := cell{what: what, median: m.format(s.median * k), spread: m.format(s.min*k) + " – " + m.format(s.max*k), runs: s.n, peer: "—", ratio: "—"}
	switch {
	case m.peer != nil:
		p, _, ok := m.peer.get(r)
		if !ok {
			c.peer = m.peerLabel + ": not measured"
			break
		}
		c.peer = m.peerLabel + ": " + m.format(p.median)
		c.ratio = m.ratio(s.median*k, p.median)
	case m.limit != 0:
		c.peer = m.peerLabel
		c.ratio = m.ratio(s.median*k, m.limit)
	}
	return c, true
}

func (m measured) label() string {
	return strings.NewReplacer("{nodes}", "N", "{windows}", "N", "{replicas}", "N").Replace(m.what)
}

// Formats.

func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return sig(ns/1e9) + " s"
	case ns >= 1e6:
		return sig(ns/1e6) + " ms"
	case ns >= 1e3:
		return sig(ns/1e3) + " µs"
	}
	return sig(ns) + " ns"
}

func seconds(s float64) string      { return duration(s * 1e9) }
func milliseconds(v float64) string { return duration(v * 1e6) }

func rate(v float64) string {
	switch {
	case v >= 1e6:
		return sig(v/1e6) + " M/s"
	case v >= 1e3:
		return sig(v/1e3) + " k/s"
	}
	return sig(v) + " /s"
}

func count(v float64) string { return group(fmt.Sprintf("%.0f", v)) }

func mib(v float64) string { return sig(v) + " MiB" }

func cpuMs(v float64) string { return sig(v) + " ms/s" }

func kib(v float64) string { return sig(v/1024) + " KiB" }

// sig prints v with three significant digits (no exponent).
func sig(v float64) string {
	if v == 0 {
		return "0"
	}
	d := 2 - int(math.Floor(math.Log10(math.Abs(v))))
	if d < 0 {
		return group(fmt.Sprintf("%.0f", math.Round(v/math.Pow10(-d))*math.Pow10(-d)))
	}
	return fmt.Sprintf("%.*f", d, v)
}

// group puts spaces between thousands of an integer string.
func group(s string) string {
	if len(s) <= 4 || strings.ContainsAny(s, ".") {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Ratios.

func times(v, p float64) string { return sig(v/p) + "×" }

func percent(v, p float64) string { return sig(100*v/p) + " %" }

func realTime(v, p float64) string { return sig(p/v) + "× real time" }
