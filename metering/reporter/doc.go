// Package reporter delivers the spool's sealed batches to the voucher
// authority (docs/protocol.md), in sequence order, exactly once in effect:
// a batch leaves the spool only when the authority's answer says it holds
// it, and a resend is the stored envelope byte for byte, so a resend after a
// lost answer is the authority's idempotent duplicate, never a second charge.
//
// It must never re-seal or change a sealed batch, never delete a batch the
// authority has not acknowledged (a refused one goes to the spool's
// dead-letter bucket, where it stays), and never log an envelope, a record
// or a key.
//
// # Loop
//
// Run (and Flush) repeat one pass: seal pending records into batches while
// fewer than Options.MaxInFlight batches are unacknowledged (so an outage's
// backlog stays pending in the spool, where it can be merged under the cap),
// then POST the lowest unacknowledged batch. Idle, Run waits for Notify;
// after a failure it waits a backoff on Options.Clock.
//
// The first pass asks GET /v1/nodes/{node}/head, a read signed with the
// node's key (Options.Key, protocol.SignRead, at Options.Clock's now and
// again on each retry), and reconciles: a head at
// or beyond a batch's last_seq acknowledges it (it was stored but the
// answer was lost); a head behind the spool's acknowledged mark means the
// authority lost data it had acknowledged, which is logged as an error and
// surfaced as Stats.Blocked; a head beyond what this spool ever sealed
// (the spool was replaced, or two agents use one node id) stops sealing and
// sending, because every batch sent would fork the node's chain.
//
// # Answers
//
//	200                        spool.Ack(head): head may cover several batches
//	409 sequence-gap,          GET head, acknowledge what it covers, resend from
//	    chain-broken (any 409)   head+1, after a short backoff so an authority
//	                             that keeps answering 409 is not hammered
//	409 fork                   dead letter, logged at error level
//	408, 425, 429, 5xx,        retried with jittered exponential backoff
//	    network                  (go-retryablehttp, Options.RetryMax times within
//	                             one send, then by the loop); Retry-After on 425,
//	                             429 and 503 is honoured, up to MaxRetryAfter.
//	                             425 is window-not-ended: a record's window ends
//	                             after the authority's clock; it never dead-letters
//	any other 4xx              dead letter, with "<status> <cause>: <detail>"
//
// Problem bodies (RFC 9457) are parsed for the cause, detail and
// expected_seq, which go into the log line and Stats.LastError.
//
// # After a dead letter
//
// The batch after a dead-lettered one chains to it (its prev_hash and
// first_seq), so the authority can never accept it: it answers
// sequence-gap until an operator resolves the dead letter at the authority.
// The reporter therefore enters the blocked state (Stats.Blocked, with the
// reason): it keeps every later batch unacknowledged in the spool (it
// neither deletes nor dead-letters them), keeps at most MaxInFlight sealed,
// probes by resending the lowest batch every RetryWaitMax (jittered), and
// leaves the state on the first 200. Flush returns ErrBlocked instead of
// waiting. The same state covers an authority whose head is behind the
// spool's acknowledged mark. Only one batch is dead-lettered per incident:
// while blocked, refusals are logged, not dead-lettered, since they would
// otherwise drain the whole backlog into the dead-letter bucket (for
// example, every batch signed with an unregistered key).
//
// # Transport
//
// HTTPS verifies the authority with the system roots, or with only the
// PEM bundle Options.CAFile when given; TLS 1.2 at least; an optional
// client certificate for authorities that require one. Each attempt is
// bounded by Options.Timeout.
package reporter
