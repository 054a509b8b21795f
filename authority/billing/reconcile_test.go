package billing

import (
	"testing"
	"time"
)

// TestStatementAndClaimCountTheSameRecords: a record a program covers but
// whose share is under one fen (here a zero cost: 408 ms at 1 fen/h) is
// noted under_one_fen, not subsidized, so the records a statement shows
// as subsidized or partial are exactly those a claim counts per voucher.
// The demo once showed 91 subsidized records against a claim of 90.
func TestStatementAndClaimCountTheSameRecords(t *testing.T) {
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBook(State{
		Cards:    []RateCard{{ID: "c", Provider: "p", Model: "H100", PricePerHour: 1, ValidFrom: jan}},
		Tenants:  map[TenantKey]string{{"p", "t"}: "e"},
		Entities: []Entity{{ID: "e", Name: "E"}},
		Programs: []Program{{ID: "P", Issuer: "i", Name: "P", Ratio: 5000, CapPerYear: 1 << 40, Providers: []string{"p"},
			ValidFrom: jan, ValidTo: jan.AddDate(1, 0, 0), Rounding: RoundHalfUp, Settlement: SettleAfter}},
		Vouchers: []Voucher{{ID: "v", Program: "P", Holder: "e", Face: 1 << 30, Balance: 1 << 30, Issued: jan,
			Expires: jan.AddDate(1, 0, 0), Status: VoucherActive}},
	})
	var lines []Line
	for i, ms := range []int64{408, 4 * 3_600_000, 0, 10 * 3_600_000} {
		ch, err := b.Bill(Usage{RecordID: string(rune('a' + i)), Provider: "p", Tenant: "t", Model: "H100", SliceNum: 1, SliceDen: 1,
			WindowStart: jan.Add(time.Duration(i) * time.Minute), GPUMillis: ms})
		if err != nil {
			t.Fatal(err)
		}
		if (ch.Subsidy == 0) != (ch.Note == NoteUnderOneFen) {
			t.Errorf("record of %d ms: cost %d, subsidy %d, note %q", ms, ch.Cost, ch.Subsidy, ch.Note)
		}
		lines = append(lines, Line{RecordID: ch.RecordID, GPUMillis: ms, Cost: ch.Cost, Subsidy: ch.Subsidy,
			Payable: ch.Cost - ch.Subsidy, Program: ch.Program, Grants: ch.Grants, Note: ch.Note})
	}
	subsidized := 0
	for _, l := range lines {
		if l.Note == NoteSubsidized || l.Note == NotePartial {
			subsidized++
		}
	}
	claimed := 0
	for _, ct := range SumByVoucher(lines) {
		claimed += ct.Records
	}
	if subsidized != 2 || claimed != subsidized {
		t.Fatalf("statement: %d subsidized records, claim: %d; want 2 and 2 (lines %+v)", subsidized, claimed, lines)
	}
}
