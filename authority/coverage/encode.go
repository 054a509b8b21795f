package coverage

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"
)

// CSVHeader is the header row of coverage as CSV.
var CSVHeader = []string{
	"gpu_uuid", "node", "provider", "registered", "from", "to",
	"expected_ms", "covered_ms", "uncovered_ms", "holes", "more_holes",
}

// WriteCSV writes coverage as CSV (RFC 4180), one row per GPU: times RFC
// 3339 UTC, durations integer ms, the listed holes as "from/to" intervals
// (ISO 8601) joined by ';', and how many more were left off.
//
// Names that nodes and operators give (GPU, node, provider) and that begin
// with = + - @ or a tab get a leading "'", so that a spreadsheet shows them
// instead of running them as formulas (as authority/billing's CSV does).
func WriteCSV(w io.Writer, gpus []GPU) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	var holes strings.Builder
	for _, g := range gpus {
		holes.Reset()
		for i, h := range g.Holes {
			if i > 0 {
				holes.WriteByte(';')
			}
			holes.WriteString(csvTime(h.From) + "/" + csvTime(h.To))
		}
		row := []string{cell(g.GPU), cell(g.Node), cell(g.Provider), csvTime(g.Registered), csvTime(g.From), csvTime(g.To),
			ms(g.ExpectedMillis), ms(g.CoveredMillis), ms(g.UncoveredMillis()), holes.String(), strconv.Itoa(g.MoreHoles)}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func ms(v int64) string { return strconv.FormatInt(v, 10) }

func csvTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
