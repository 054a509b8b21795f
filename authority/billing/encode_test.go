package billing

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleLines() []Line {
	w := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	return []Line{
		{RecordID: "r1", Node: "n1", Provider: "p1", Tenant: "acme", Entity: "E1", GPUUUID: "GPU-00000000-0000-4000-8000-000000000001", Model: "H100-SXM5-80GB",
			WindowStart: w, WindowEnd: w.Add(time.Minute), GPUMillis: 60_000, RateCard: "c1", PricePerHour: 250,
			Cost: 5, Subsidy: 3, Payable: 2, Program: "P1", Grants: []Grant{{Voucher: "v1", Amount: 1}, {Voucher: "v2", Amount: 2}}, Note: NotePartial},
		{RecordID: "r2", Node: "n1", Provider: "p1", Tenant: "=HYPERLINK(\"x\")", GPUUUID: "MIG-00000000-0000-4000-9000-000000000001", Model: "H100-SXM5-80GB",
			MIGProfile: "1g.10gb", WindowStart: w, WindowEnd: w.Add(time.Minute), GPUMillis: 1000, Note: NoteUnpriced},
		{RecordID: "r3", Node: "n1", Provider: "p1", Tenant: "acme", Entity: "E1", GPUUUID: "GPU-00000000-0000-4000-8000-000000000001", Model: "H100-SXM5-80GB",
			WindowStart: w.Add(time.Minute), WindowEnd: w.Add(2 * time.Minute), GPUMillis: 60_000, RateCard: "c1",
			PricePerHour: 250, Cost: 4, Subsidy: 4, Program: "P1", Grants: []Grant{{Voucher: "v2", Amount: 4}}, Note: NoteSubsidized},
		// Held for review: its grant is taken but not claimable, nor owed.
		{RecordID: "r4", Node: "n1", Provider: "p1", Tenant: "acme", Entity: "E1", GPUUUID: "GPU-2", Model: "H100",
			WindowStart: w, WindowEnd: w.Add(time.Minute), GPUMillis: 60_000, RateCard: "c1", PricePerHour: 250,
			Cost: 4, Held: 2, Payable: 2, Program: "P1", Grants: []Grant{{Voucher: "v1", Amount: 2}}, Note: NotePartial, Review: ReviewHeld},
		// Rejected: the grant went back; the tenant owes the cost.
		{RecordID: "r5", Node: "n1", Provider: "p1", Tenant: "acme", Entity: "E1", GPUUUID: "GPU-2", Model: "H100",
			WindowStart: w.Add(time.Minute), WindowEnd: w.Add(2 * time.Minute), GPUMillis: 60_000, RateCard: "c1", PricePerHour: 250,
			Cost: 4, Payable: 4, Program: "P1", Note: NoteSubsidized, Review: ReviewRejected},
		// Approved: paid as billed.
		{RecordID: "r6", Node: "n1", Provider: "p1", Tenant: "acme", Entity: "E1", GPUUUID: "GPU-2", Model: "H100",
			WindowStart: w.Add(2 * time.Minute), WindowEnd: w.Add(3 * time.Minute), GPUMillis: 60_000, RateCard: "c1", PricePerHour: 250,
			Cost: 4, Subsidy: 2, Payable: 2, Program: "P1", Grants: []Grant{{Voucher: "v2", Amount: 2}}, Note: NoteSubsidized, Review: ReviewApproved},
	}
}

func TestSums(t *testing.T) {
	lines := sampleLines()
	want := Totals{Records: 6, GPUMillis: 301_000, Cost: 21, Subsidy: 9, Held: 2, Payable: 10, Unpriced: 1, HeldRecords: 1, RejectedRecords: 1}
	if got := Sum(lines); got != want {
		t.Errorf("Sum = %+v, want %+v", got, want)
	}
	if got := Sum(lines); got.Cost != got.Subsidy+got.Held+got.Payable {
		t.Errorf("cost %d is not subsidy %d + held %d + payable %d", got.Cost, got.Subsidy, got.Held, got.Payable)
	}
	// The held line's v1 grant is not claimed.
	wantBy := []ClaimTotal{{Program: "P1", Voucher: "v1", Records: 1, Amount: 1}, {Program: "P1", Voucher: "v2", Records: 3, Amount: 8}}
	if got := SumByVoucher(lines); !reflect.DeepEqual(got, wantBy) {
		t.Errorf("SumByVoucher = %+v, want %+v", got, wantBy)
	}
}

func TestWriteLinesCSV(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteLinesCSV(&buf, sampleLines()); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v", err)
	}
	if len(rows) != 7 || !reflect.DeepEqual(rows[0], LinesCSVHeader) {
		t.Fatalf("rows %d, header %v", len(rows), rows[0])
	}
	col := map[string]int{}
	for i, h := range LinesCSVHeader {
		col[h] = i
	}
	r1 := rows[1]
	for h, want := range map[string]string{"record_id": "r1", "window_start": "2026-11-23T08:00:00Z", "gpu_ms": "60000",
		"cost_fen": "5", "subsidy_fen": "3", "held_subsidy_fen": "0", "payable_fen": "2", "grants": "v1:1;v2:2",
		"note": "partial", "mig_profile": "", "review": ""} {
		if r1[col[h]] != want {
			t.Errorf("row 1 %s = %q, want %q", h, r1[col[h]], want)
		}
	}
	for row, cols := range map[int]map[string]string{
		4: {"subsidy_fen": "0", "held_subsidy_fen": "2", "payable_fen": "2", "grants": "v1:2", "review": "held"},
		5: {"subsidy_fen": "0", "held_subsidy_fen": "0", "payable_fen": "4", "grants": "", "review": "rejected"},
		6: {"subsidy_fen": "2", "held_subsidy_fen": "0", "payable_fen": "2", "review": "approved"},
	} {
		for h, want := range cols {
			if got := rows[row][col[h]]; got != want {
				t.Errorf("row %d %s = %q, want %q", row, h, got, want)
			}
		}
	}
	if got := rows[2][col["tenant"]]; got != `'=HYPERLINK("x")` {
		t.Errorf("a formula-like tenant is written %q, want it quoted with a leading '", got)
	}
	if got := rows[3][col["grants"]]; got != "v2:4" {
		t.Errorf("row 3 grants %q", got)
	}
}

func TestWriteClaimTotalsCSV(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteClaimTotalsCSV(&buf, SumByVoucher(sampleLines())); err != nil {
		t.Fatal(err)
	}
	want := "program,voucher,records,amount_fen\nP1,v1,1,1\nP1,v2,3,8\n"
	if buf.String() != want {
		t.Errorf("claim totals CSV:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	lines := sampleLines()
	st := Statement{Entity: "E1", From: lines[0].WindowStart, To: lines[0].WindowStart.Add(time.Hour), Lines: lines, Totals: Sum(lines)}
	var buf bytes.Buffer
	if err := WriteStatementJSON(&buf, st); err != nil {
		t.Fatal(err)
	}
	var back Statement
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Errorf("statement changed through JSON:\n%+v\n%+v", back, st)
	}
	if !strings.Contains(buf.String(), `"grants":[{"voucher":"v1","amount_fen":1}`) {
		t.Errorf("JSON grants not as documented: %s", buf.String())
	}
	for _, w := range []string{`"held_subsidy_fen":2,"payable_fen":2`, `"review":"held"`, `"review":""`,
		`"held_subsidy_fen":2,"payable_fen":10`, `"held_records":1,"rejected_records":1`} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("JSON statement lacks %s: %s", w, buf.String())
		}
	}
	// An empty claim has lists, not nulls.
	buf.Reset()
	if err := WriteClaimJSON(&buf, Claim{Provider: "p1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"lines":[]`) || !strings.Contains(buf.String(), `"by_voucher":[]`) {
		t.Errorf("empty claim: %s", buf.String())
	}
}
