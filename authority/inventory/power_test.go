package inventory_test

import (
	"math"
	"testing"

	"github.com/gpumeter/gpumeter/authority/inventory"
)

func TestMaxEnergyMillijoules(t *testing.T) {
	h100 := mustLookup(t, "H100-SXM5-80GB") // 700 W
	odd := inventory.Model{MaxPowerMilliwatts: 1}
	big := inventory.Model{MaxPowerMilliwatts: math.MaxInt64}
	tests := []struct {
		name   string
		m      inventory.Model
		window int64
		want   int64
	}{
		{"no window", h100, 0, 0},
		{"negative window", h100, -5, 0},
		{"1 ms", h100, 1, 700},
		{"10 s", h100, 10_000, 7_000_000},
		{"1 day", h100, 86_400_000, 60_480_000_000},
		{"rounds up", odd, 1, 1},
		{"exact thousand", odd, 1000, 1},
		{"just over a thousand", odd, 1001, 2},
		{"largest window", h100, math.MaxInt64, math.MaxInt64},
		{"largest power, 1 s", big, 1000, math.MaxInt64},
		{"largest power, 1 ms", big, 1, math.MaxInt64/1000 + 1},
		{"largest power, 1001 ms", big, 1001, math.MaxInt64},
		{"largest both", big, math.MaxInt64, math.MaxInt64},
	}
	for _, tt := range tests {
		if got := tt.m.MaxEnergyMillijoules(tt.window); got != tt.want {
			t.Errorf("%s: MaxEnergyMillijoules(%d) = %d, want %d", tt.name, tt.window, got, tt.want)
		}
	}
}

func TestAtOrBelowIdle(t *testing.T) {
	h100 := mustLookup(t, "H100-SXM5-80GB") // floor 85 W
	if h100.IdleFloorMilliwatts != 85_000 {
		t.Fatalf("this test assumes an 85 W floor, the table has %d mW", h100.IdleFloorMilliwatts)
	}
	huge := inventory.Model{IdleFloorMilliwatts: math.MaxInt64}
	tests := []struct {
		name   string
		m      inventory.Model
		energy int64
		millis int64
		want   bool
	}{
		{"nothing drawn", h100, 0, 10_000, true},
		{"hardware run idle, 74 W", h100, 742_803, 10_000, true},
		{"exactly the floor", h100, 850_000, 10_000, true},
		{"1 mJ over the floor", h100, 850_001, 10_000, false},
		{"full power", h100, 7_000_000, 10_000, false},
		{"exactly the floor over 1 ms", h100, 85, 1, true},
		{"just over over 1 ms", h100, 86, 1, false},
		{"energy unknown", h100, -1, 10_000, false},
		{"no time", h100, 0, 0, false},
		{"negative time", h100, 0, -1, false},
		{"a day at the floor", h100, 85 * 86_400_000, 86_400_000, true},
		{"a day, 1 mJ over", h100, 85*86_400_000 + 1, 86_400_000, false},
		{"1e11 mJ in a day", h100, 100_000_000_000, 86_400_000, false},
		// energy × 1000 and floor × millis overflow int64 here.
		{"largest energy", h100, math.MaxInt64, 86_400_000, false},
		{"largest energy over largest time: 1 W", h100, math.MaxInt64, math.MaxInt64, true},
		{"largest energy over 1/86 of largest time: 86 W", h100, math.MaxInt64, math.MaxInt64 / 86, false},
		{"huge floor, largest both", huge, math.MaxInt64, math.MaxInt64, true},
		{"huge floor, 1000× the time", huge, math.MaxInt64, 1000, true},
		{"huge floor, 999× the time", huge, math.MaxInt64, 999, false},
		{"largest time, little energy", h100, 1, math.MaxInt64, true},
	}
	for _, tt := range tests {
		if got := tt.m.AtOrBelowIdle(tt.energy, tt.millis); got != tt.want {
			t.Errorf("%s: AtOrBelowIdle(%d, %d) = %v, want %v", tt.name, tt.energy, tt.millis, got, tt.want)
		}
	}
}
