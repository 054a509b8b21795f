package ledger_test

import (
	"testing"

	"github.com/gpumeter/gpumeter/metering/ledger"
)

// TestSealStampsInstance: a sealer WithInstance stamps the id into every
// batch it seals (and it opens again); the original sealer is unchanged;
// an id outside [0-9a-z-]{1,64} is refused.
func TestSealStampsInstance(t *testing.T) {
	f := newFixture(t, "node-01")
	s, err := f.sealer.WithInstance("0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sealer *ledger.Sealer
		want   string
	}{{s, "0123456789abcdef"}, {f.sealer, ""}} {
		_, b, _ := f.sealOpen(t, tc.sealer, 2)
		if b.Instance != tc.want || tc.sealer.Instance() != tc.want {
			t.Errorf("batch instance %q, sealer's %q, want %q", b.Instance, tc.sealer.Instance(), tc.want)
		}
	}
	for _, bad := range []string{"", "UPPER", "with space", string(make([]byte, 65))} {
		if _, err := f.sealer.WithInstance(bad); err == nil {
			t.Errorf("WithInstance(%q) accepted", bad)
		}
	}
}
