package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// results holds every value read, by benchmark name and unit, in the
// order read.
type results map[string]map[string][]float64

// parse reads Go benchmark lines ("BenchmarkName[-P] N value unit [value
// unit]...") and ignores every other line. The -P GOMAXPROCS suffix is
// dropped, so results of one benchmark on any machine group together.
func (r results) parse(in io.Reader, name string) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		bench := trimProcs(f[0])
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%s:%d: %s: value %q of %s is not a number", name, n, bench, f[i], f[i+1])
			}
			if r[bench] == nil {
				r[bench] = map[string][]float64{}
			}
			r[bench][f[i+1]] = append(r[bench][f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// trimProcs drops a trailing "-<digits>" (the GOMAXPROCS go test appends).
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return name
	}
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return name
		}
	}
	return name[:i]
}

// summary is the median and range of one series.
type summary struct {
	median, min, max float64
	n                int
}

func summarize(vs []float64) (summary, bool) {
	if len(vs) == 0 {
		return summary{}, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{median: m, min: s[0], max: s[len(s)-1], n: len(s)}, true
}

func (r results) get(bench, unit string) (summary, bool) {
	return summarize(r[bench][unit])
}
