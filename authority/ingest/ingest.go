package ingest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// DefaultClockSkew is how far past the authority's now a record's window
// may end (docs/protocol.md: 5 min).
const DefaultClockSkew = 5 * time.Minute

// Options configure an Ingester.
type Options struct {
	Store *store.Store
	Clock clock.Clock   // nil: the real clock
	Skew  time.Duration // 0: DefaultClockSkew
	// Limits bound the windows a node may declare (zero fields: defaults).
	Limits Limits
}

// Limits bound what a node's inventory may declare: its metering window
// and its spool's merge window. A record is never longer than these.
type Limits struct {
	MaxWindow      time.Duration // 0: DefaultMaxWindow
	MaxMergeWindow time.Duration // 0: DefaultMaxMergeWindow
}

// Ingester verifies and stores batches. Safe for concurrent use: the store
// serializes the transactions.
type Ingester struct {
	st     *store.Store
	clock  clock.Clock
	skew   time.Duration
	limits Limits
}

// New builds an Ingester.
func New(opts Options) (*Ingester, error) {
	if opts.Store == nil {
		return nil, errors.New("new ingester: nil store")
	}
	if opts.Skew < 0 {
		return nil, fmt.Errorf("new ingester: negative clock skew %s", opts.Skew)
	}
	if opts.Limits.MaxWindow < 0 || opts.Limits.MaxMergeWindow < 0 {
		return nil, fmt.Errorf("new ingester: negative window limit %+v", opts.Limits)
	}
	in := &Ingester{st: opts.Store, clock: opts.Clock, skew: opts.Skew, limits: opts.Limits}
	if in.limits.MaxWindow == 0 {
		in.limits.MaxWindow = DefaultMaxWindow
	}
	if in.limits.MaxMergeWindow == 0 {
		in.limits.MaxMergeWindow = DefaultMaxMergeWindow
	}
	if in.clock == nil {
		in.clock = clock.Real{}
	}
	if in.skew == 0 {
		in.skew = DefaultClockSkew
	}
	return in, nil
}

// Outcome describes what happened to a batch, accepted or not.
type Outcome struct {
	Node      string // "" when refused before the batch was authenticated
	KeyID     string
	FirstSeq  uint64
	LastSeq   uint64
	Head      uint64 // accepted: the node's head after the batch
	Duplicate bool
	Records   int // records stored
	// Flagged: this refusal came from a second copy of the node
	// (second-signer, or fork to an agent that sends no instance id) and
	// flagged the node for review.
	Flagged bool
	// Instance is the batch's instance id, once it was opened.
	Instance string
	// LogIndex is the accepted batch's leaf in the verifiable log (a
	// duplicate's: the stored batch's); nil when the log keeps none.
	LogIndex *uint64
}

// Ingest verifies envelope and stores its batch. A refusal returns a
// *protocol.Problem; any other error is the authority's own failure.
func (in *Ingester) Ingest(ctx context.Context, envelope []byte) (Outcome, error) {
	now := in.clock.Now()
	var signer Outcome // the key's node, once the key is known
	lookup := in.keyLookup(ctx, now)
	b, payload, err := ledger.Open(ctx, envelope, func(keyID string) (ed25519.PublicKey, string, bool, error) {
		pub, node, revoked, err := lookup(keyID)
		if err == nil {
			signer.Node, signer.KeyID = node, keyID
		}
		return pub, node, revoked, err
	})
	if err != nil {
		if c, ok := ledger.CauseOf(err); ok {
			// ledger.Cause values are the protocol's type suffixes. A cause
			// found after the signature verified names the signing node,
			// for the audit trail; before, nobody is known.
			out := Outcome{}
			if c.AfterVerification() {
				out = signer
			}
			return out, protocol.NewProblem(string(c), err.Error())
		}
		return Outcome{}, fmt.Errorf("ingest: %w", err)
	}
	out := Outcome{Node: b.Node, KeyID: b.KeyID, FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Instance: b.Instance}
	if p := checkRecords(&b, now, in.skew); p != nil {
		return out, p
	}
	res, err := in.st.Ingest(ctx, store.Submission{
		Batch: b, Hash: protocol.Hash(payload), Envelope: envelope, Received: now, Now: in.clock.Now, Verify: in.verify,
	})
	if err != nil {
		p := storeProblem(err, b.Instance)
		if p == nil {
			return out, fmt.Errorf("ingest batch %d of node %q: %w", b.FirstSeq, b.Node, err)
		}
		out.Flagged = errors.Is(err, store.ErrSecondSigner)
		return out, p
	}
	out.Head, out.Duplicate, out.Records, out.LogIndex = res.Head, res.Duplicate, res.Records, res.LogIndex
	return out, nil
}

// keyLookup adapts the store's registry to ledger.KeyLookup. A key counts
// as revoked from its revocation time on, judged at the request's now.
func (in *Ingester) keyLookup(ctx context.Context, now time.Time) ledger.KeyLookup {
	return func(keyID string) (ed25519.PublicKey, string, bool, error) {
		k, err := in.st.Key(ctx, keyID)
		if errors.Is(err, store.ErrKeyNotFound) {
			return nil, "", false, fmt.Errorf("%w: %v", ledger.ErrUnknownKey, err)
		}
		if err != nil {
			return nil, "", false, err
		}
		return k.Public, k.Node, k.RevokedAsOf(now), nil
	}
}

// storeProblem maps the store's refusals to problems; nil means the error
// is not a refusal. instance is the refused batch's instance id: a second
// signer is answered second-signer, but fork to an agent that sends no
// instance id (one older than second-signer, which stops on fork and
// would otherwise retry an unknown 409 for ever; docs/protocol.md).
func storeProblem(err error, instance string) *protocol.Problem {
	var p *protocol.Problem
	if errors.As(err, &p) { // the verifier's refusal
		return p
	}
	var se *store.SeqError
	if errors.As(err, &se) {
		cause := protocol.SequenceGap
		if errors.Is(se.Err, store.ErrSecondSigner) {
			cause = protocol.SecondSigner
			if instance == "" {
				cause = protocol.Fork
			}
		}
		return protocol.NewProblem(cause, se.Error()).WithExpected(se.Expected)
	}
	for _, m := range []struct {
		err   error
		cause string
	}{
		{store.ErrOverWallTime, protocol.OverWallTime},
		{store.ErrOverGPUTime, protocol.OverGPUTime},
		{store.ErrRevokedAtIngest, protocol.RevokedKey},
		{store.ErrKeyNotFound, protocol.UnknownKey},
		{store.ErrGPUNotRegistered, protocol.GPUNotRegistered},
		{store.ErrGPUClaimed, protocol.GPUClaimed},
		{store.ErrInvalidRecord, protocol.InvalidRecord},
		// A key whose node is gone cannot sign for anything.
		{store.ErrNodeNotFound, protocol.UnknownKey},
	} {
		if errors.Is(err, m.err) {
			return protocol.NewProblem(m.cause, err.Error())
		}
	}
	return nil
}
