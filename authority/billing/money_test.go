package billing

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestCostCarrySumsToTheExactMonth: 60 one-minute records at 250 fen/h are
// 4.1667 fen each; rounding each would bill 240 or 300, the carry bills
// exactly 250, each record 4 or 5.
func TestCostCarrySumsToTheExactMonth(t *testing.T) {
	carry := InitialCostCarry(1)
	var sum Fen
	for i := range 60 {
		c, r, err := Cost(carry, 250, 60_000, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if c != 4 && c != 5 {
			t.Fatalf("record %d costs %d fen, want 4 or 5", i, c)
		}
		sum, carry = sum+c, r
	}
	if sum != 250 {
		t.Fatalf("60 minutes at 250 fen/h cost %d fen, want 250", sum)
	}
	if carry != InitialCostCarry(1) {
		t.Errorf("carry after a whole hour = %d, want back at half a fen %d", carry, InitialCostCarry(1))
	}
}

func TestCostRoundsHalfUpAndScales(t *testing.T) {
	tests := []struct {
		name           string
		price          Fen
		ms, num, den   int64
		want           Fen
		wantRemainderD int64 // remainder, in CostDenominator(den)
	}{
		{"half a fen rounds up", 1, 1_800_000, 1, 1, 1, 0},
		{"just under half rounds down", 1, 1_799_999, 1, 1, 0, 1_800_000 + 1_799_999},
		{"an hour at the price", 1234, 3_600_000, 1, 1, 1234, 1_800_000},
		{"a 3/7 slice of an hour", 700, 3_600_000, 3, 7, 300, 7 * 1_800_000},
		{"zero ms", 999, 0, 1, 1, 0, 1_800_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, r, err := Cost(InitialCostCarry(tc.den), tc.price, tc.ms, tc.num, tc.den)
			if err != nil || c != tc.want || r != tc.wantRemainderD {
				t.Fatalf("Cost = %d, %d, %v; want %d, %d", c, r, err, tc.want, tc.wantRemainderD)
			}
		})
	}
}

func TestEntitleRounding(t *testing.T) {
	// 20% of 7 fen is 1.4 fen, of 8 fen 1.6 fen.
	tests := []struct {
		rounding string
		costs    []Fen
		want     []Fen
	}{
		{RoundHalfUp, []Fen{7, 8, 8}, []Fen{1, 2, 2}},   // running 1.4, 3.0, 4.6 → 1, 3, 5
		{RoundTruncate, []Fen{7, 8, 8}, []Fen{1, 2, 1}}, // running 1.4, 3.0, 4.6 → 1, 3, 4
		{RoundTruncate, []Fen{7, 7, 7}, []Fen{1, 1, 2}}, // running 1.4, 2.8, 4.2 → 1, 2, 4
		{RoundHalfUp, []Fen{7, 7, 7}, []Fen{1, 2, 1}},   // → 1, 3, 4
	}
	for _, tc := range tests {
		carry := InitialSubsidyCarry(tc.rounding)
		for i, c := range tc.costs {
			e, r, err := Entitle(carry, 2000, c)
			if err != nil {
				t.Fatal(err)
			}
			if e != tc.want[i] {
				t.Errorf("%s %v: record %d entitled %d, want %d", tc.rounding, tc.costs, i, e, tc.want[i])
			}
			carry = r
		}
	}
	if e, _, _ := Entitle(InitialSubsidyCarry(RoundHalfUp), 9999, 1); e != 1 {
		t.Errorf("99.99%% of 1 fen half up = %d, want 1", e)
	}
	if e, _, _ := Entitle(9999, 10000, 5); e != 5 {
		t.Errorf("100%% of 5 fen with a full carry = %d, never above the cost", e)
	}
}

func TestCarryDivOverflow(t *testing.T) {
	if _, _, err := Cost(0, MaxPricePerHour, math.MaxInt64, 1, 1); !errors.Is(err, ErrOverflow) {
		t.Errorf("max price × max ms: %v, want ErrOverflow", err)
	}
	// A 10 000-year record at the maximum price still fits.
	ms := int64(10_000 * 366 * 24 * 3_600_000)
	if c, _, err := Cost(0, MaxPricePerHour, ms, 1, 1); err != nil || c != MaxPricePerHour*Fen(ms/3_600_000) {
		t.Errorf("10 000 years at the maximum price: %d, %v", c, err)
	}
	if _, _, err := carryDiv(5, 1, 1, 1, 5); err == nil {
		t.Error("carry ≥ divisor accepted")
	}
}

func TestCalendarIsChinaStandardTime(t *testing.T) {
	at := time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC) // 2027-01-01 00:00 CST
	if Month(at) != "2027-01" || Year(at) != 2027 {
		t.Errorf("%s: month %s year %d, want 2027-01 2027", at, Month(at), Year(at))
	}
	before := at.Add(-time.Millisecond)
	if Month(before) != "2026-12" || Year(before) != 2026 {
		t.Errorf("%s: month %s year %d", before, Month(before), Year(before))
	}
}

func TestFormatYuan(t *testing.T) {
	for f, want := range map[Fen]string{0: "0.00", 5: "0.05", 250: "2.50", -1205: "-12.05", 100_000_000_000: "1000000000.00",
		math.MinInt64: "-92233720368547758.08"} {
		if got := FormatYuan(f); got != want {
			t.Errorf("FormatYuan(%d) = %s, want %s", f, got, want)
		}
	}
}

// TestBillsFirstOrdersByWindowThenSeq: an earlier window goes first
// whatever the sequence; within one window the lower sequence does.
func TestBillsFirstOrdersByWindowThenSeq(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC)
	early, late := Usage{WindowStart: t0}, Usage{WindowStart: t0.Add(time.Minute)}
	for _, c := range []struct {
		name string
		a    Usage
		aSeq uint64
		b    Usage
		bSeq uint64
		want bool
	}{
		{"earlier window, higher seq", early, 9, late, 1, true},
		{"later window, lower seq", late, 1, early, 9, false},
		{"same window, lower seq", early, 1, early, 2, true},
		{"same window, higher seq", early, 2, early, 1, false},
		{"same record", early, 1, early, 1, false},
	} {
		if got := BillsFirst(c.a, c.aSeq, c.b, c.bSeq); got != c.want {
			t.Errorf("%s: BillsFirst = %v, want %v", c.name, got, c.want)
		}
	}
}
