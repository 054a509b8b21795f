package ingest

import (
	"testing"

	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestLedgerCausesAreProblems: every cause ledger.Open returns is a
// problem type of the protocol, answered 4xx (an unmapped one would be 500,
// and the agent would retry a batch that can never succeed).
func TestLedgerCausesAreProblems(t *testing.T) {
	for _, c := range []ledger.Cause{ledger.ErrMalformed, ledger.ErrUnknownKey, ledger.ErrRevokedKey,
		ledger.ErrBadSignature, ledger.ErrNodeMismatch, ledger.ErrInvalidRecord} {
		t.Run(string(c), func(t *testing.T) {
			p := protocol.NewProblem(string(c), "d")
			if p.Cause() != string(c) || p.Status < 400 || p.Status >= 500 {
				t.Fatalf("cause %q -> %q %d", c, p.Cause(), p.Status)
			}
		})
	}
}
