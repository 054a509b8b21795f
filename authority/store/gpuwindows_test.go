package store

import (
	"errors"
	"testing"
)

// TestCheckGPUWindows: the GPU-time rule on one GPU's intervals, stored
// (with their totals) and new (with this batch's), in 1/SliceScale ms.
func TestCheckGPUWindows(t *testing.T) {
	const s = SliceScale
	type iv struct{ start, end, total int64 }
	tests := []struct {
		name   string
		stored []iv
		added  []iv
		ok     bool
	}{
		{"a whole minute of a whole GPU", nil, []iv{{0, 60000, 60000 * s}}, true},
		{"a minute and a millisecond", nil, []iv{{0, 60000, 60000*s + 1}}, false},
		{"seven sevenths of a minute", nil, []iv{{0, 60000, 7 * (60000 * s / 7)}}, true},
		{"the next window beside a full one", []iv{{0, 60000, 60000 * s}}, []iv{{60000, 120000, 60000 * s}}, true},
		{"more in a full window", []iv{{0, 60000, 60000 * s}}, []iv{{0, 60000, 1}}, false},
		{"two restart parts of one window", []iv{{0, 30000, 30000 * s}}, []iv{{30000, 60000, 30000 * s}}, true},
		{"a window crossing a stored one", []iv{{0, 60000, 1}}, []iv{{30000, 90000, 1}}, false},
		{"a merged hour holding stored minutes", []iv{{0, 60000, 60000 * s}, {60000, 120000, 60000 * s}},
			[]iv{{0, 3600000, (3600000 - 120000) * s}}, true},
		{"a merged hour over its stored minutes", []iv{{0, 60000, 60000 * s}, {60000, 120000, 60000 * s}},
			[]iv{{0, 3600000, (3600000-120000)*s + 1}}, false},
		{"a minute inside a full merged hour", []iv{{0, 3600000, 3600000 * s}}, []iv{{60000, 120000, 1}}, false},
		{"an untouched stored window is not judged", []iv{{0, 60000, 99 * 60000 * s}}, []iv{{60000, 120000, 1}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stored []gpuNode
			for _, x := range tc.stored {
				stored = append(stored, gpuNode{start: x.start, end: x.end, own: x.total})
			}
			sums := map[gpuInterval]int64{}
			var ivs []gpuInterval
			for _, x := range tc.added {
				g := gpuInterval{"GPU-x", x.start, x.end}
				sums[g] += x.total
				ivs = append(ivs, g)
			}
			err := checkGPUWindows("GPU-x", stored, ivs, sums)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrOverGPUTime) {
				t.Fatalf("err = %v, want ErrOverGPUTime", err)
			}
		})
	}
}
