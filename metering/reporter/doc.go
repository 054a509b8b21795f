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
// after a failure it waits a backoff on Options.Clock (package doc, "One
// retry layer").
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
// Every batch carries the sealer's instance id (protocol.Batch.Instance,
// ledger.Sealer.WithInstance), which names this copy of the agent in a
// second-signer refusal.
//
// # Answers
//
//	200                        spool.Ack(head): head may cover several batches
//	held 4xx (Problem.Hold,    kept unacknowledged and sent again, byte for byte,
//	    or protocol.Held:        after Retry-After or about RetryWaitMax (jittered);
//	    unknown/revoked key,     never dead-lettered. Stats.Held and HeldCause; the
//	    GPU not registered or    log says, on entry and when the cause changes, what
//	    claimed, no inventory,   the operator does. The Hold flag decides for causes
//	    before registration,     this version does not know, the cause list for an
//	    future-window,           authority that does not send the flag.
//	    window-not-ended)
//	409 sequence-gap,          GET head, acknowledge what it covers, resend from
//	    chain-broken (any 409)   head+1, after a short backoff so an authority
//	                             that keeps answering 409 is not hammered
//	409 second-signer          blocked: another copy of the node signs with its key
//	                             and the authority kept the other copy's chain.
//	                             Nothing dead-lettered, nothing sent, logged once,
//	                             Stats.SecondSigner, until the spool changes
//	409 fork                   (an older authority's second-signer) dead letter,
//	                             logged at error level, blocked until the spool changes
//	408, 429, 5xx, network     retried with jittered exponential backoff;
//	                             Retry-After on 425, 429 and 503 is honoured, up
//	                             to MaxRetryAfter; on 429 and 503 (503 overloaded:
//	                             the authority's admission control) spread over
//	                             [d, 1.5·d] so that shed nodes do not all return
//	                             at once. A 425 without a problem body
//	                             (an older authority) is retried the same way
//	any other 4xx              final: dead letter, with "<status> <cause>: <detail>"
//
// Problem bodies (RFC 9457) are parsed for the cause, detail, hold,
// expected_seq and authority_time, which go into the log line and Stats.
//
// # One retry layer
//
// Each HTTP request is one attempt (a plain net/http client bounded by
// Options.Timeout); every retry and every wait is the loop's. One place
// decides: it knows the chain state (a 409 asks the head before resending,
// a held batch waits long, a blocked reporter only reads), it honours
// Retry-After, and it waits on Options.Clock, so tests advance an injected
// clock instead of sleeping and a simulated node waits in its own time. An
// HTTP library retrying inside the request (go-retryablehttp, before) made
// a second, blind layer on real timers: a refused batch was resent up to
// RetryMax times before the loop even saw the answer. Transport errors that
// a quick retry cannot fix (the authority's certificate does not verify, an
// unsupported URL scheme, a redirect loop) are told apart: they are logged
// at error level and tried again about every RetryWaitMax.
//
// # The authority's clock
//
// Every answer tells the authority's time: a problem's authority_time
// (milliseconds), and the HTTP Date header (whole seconds) on every answer.
// The reporter keeps the offset (authority minus Options.Clock, taken at
// the midpoint of the exchange) from the most precise source it has
// (Stats.ClockOffset) and logs a warning when it exceeds
// Options.MaxClockOffset (DefaultMaxClockOffset says why 2s). A clock
// ahead of the authority's makes fresh windows window-not-ended: held,
// not lost.
//
// # After a dead letter
//
// The batch after a dead-lettered one chains to it (its prev_hash and
// first_seq), so the authority can never accept it. The reporter therefore
// enters the blocked state (Stats.Blocked, with the reason): it keeps every
// later batch unacknowledged in the spool (it neither deletes nor
// dead-letters them), stops sealing (pending records stay mergeable), and
// about every RetryWaitMax (jittered; Wake cuts it short) asks the
// authority's head, sending nothing. The state is read from the spool and
// the head each time, not remembered: it ends as soon as the spool's lowest
// batch continues the authority's chain again, after an operator's
// `gpumeter spool requeue` (the dead letter is unacknowledged again) or
// `gpumeter spool re-anchor` (the spool's chain restarts at the authority's
// head), or a replay of the dead letter at the authority; no restart is
// needed. Flush returns ErrBlocked instead of waiting. The same state
// covers an authority whose head is behind the spool's acknowledged mark
// or beyond what this spool sealed. Since a blocked reporter sends
// nothing, only one batch is dead-lettered per incident. A fork or
// second-signer block cannot be ended by the authority's head (the other
// copy moves it); it ends when the spool changes (its heads, dead letters
// or lowest batch) or at a restart.
//
// # Transport
//
// HTTPS verifies the authority with the system roots, or with only the
// PEM bundle Options.CAFile when given; TLS 1.2 at least; an optional
// client certificate for authorities that require one. Each attempt is
// bounded by Options.Timeout.
package reporter
