package testutil

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/gpumeter/gpumeter/protocol"
)

// ReadRecords reads an agent's records file (output.records_file: one
// JSON record a line). It fails t on a line that is not a record.
func ReadRecords(t testing.TB, path string) []protocol.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // only read
	var recs []protocol.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var r protocol.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}
