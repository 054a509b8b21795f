// Package spool is the agent's durable store of usage between the meter
// and the authority: closed windows' records waiting to be sealed, sealed
// batches waiting to be acknowledged, and batches the authority refused.
//
// It must never lose or change a record it has acknowledged storing, never
// reuse a sequence number, never change a sealed batch's bytes, and never
// delete a batch the authority has not acknowledged (dead letters are kept
// for good). It does not sign (the caller passes a SealFunc), does not talk
// to the network, and does not log: callers read Stats for metrics.
//
// # File
//
// One bbolt file, opened with NoSync false: every transaction is fsynced
// before its call returns, so "returned nil" means "survives a crash or
// power loss". A second process waits at most 1 s for the file lock and then
// gets ErrLocked. Buckets:
//
//	meta        format version, next_seq, last_hash, acked, checkpoint, and
//	            counters (pending records/bytes, batches/bytes, dead letters)
//	pending     key: 8-byte big-endian entry number; value: a flag byte
//	            (0 window, 1 merged) and the JSON array of one window's
//	            records as the meter closed it, or of one inventory
//	            record, or of one merged run; unsealed and unnumbered
//	batches     key: 8-byte big-endian first_seq; value: last_seq (8 bytes),
//	            sha256 hash (32 bytes), the DSSE envelope JSON as signed
//	deadletter  key: first_seq; value: JSON of the batch, reason and time
//	            (and when its records were sealed again by a re-anchor)
//	quarantine  key: sequence; value: JSON of a damaged pending entry or
//	            batch as found, where it was, why and when
//
// Every counter changes in the same transaction as the data it counts, so
// Stats and Head need no I/O and are never out of step with the file.
//
// # Flow
//
// Append stores records and the meter's opaque checkpoint in one
// transaction: after a crash the file has both or neither, so a restarted
// meter resumes from a checkpoint that matches exactly the records stored,
// and the caller records the time since that checkpoint as a gap. Records
// keep the order they were given in, through sealing: an inventory record
// (an instant, window start == end) stays ahead of the records after it.
//
// SealNext takes the oldest pending entries, whole (a window is split only
// when it alone exceeds a batch), numbers them from next_seq, chains them to
// last_hash through the SealFunc, stores the envelope and removes the
// entries, in one transaction. Sequence numbers are therefore assigned once,
// at commit, never per send attempt, and a resend sends the stored bytes.
//
// Unacked lists sealed batches in order; Ack(head) deletes those ending at
// or before head and moves the acknowledged mark, which never goes back;
// DeadLetter moves one batch aside with its reason.
//
// # Cap and merging
//
// Options.MaxBytes caps the stored bytes of pending entries plus
// unacknowledged batches (dead letters are not counted: they are few and
// must not push out live usage). Counting batches too, not only pending
// records, is a departure from the first design: with a reporter that seals
// eagerly, pending alone stays small during an outage while batches grow
// without bound. The reporter should therefore seal only while few batches
// are unacknowledged, so that a backlog stays pending and can be merged.
//
// When an Append would exceed the cap, the oldest run of consecutive
// unmerged pending entries in one aligned Options.MergeWindow bucket is
// merged (merge.go), repeatedly, until the spool fits or every pending
// entry is merged. Merging keeps, per unit, every tenant's usage, idle and
// each gap reason's milliseconds exactly, as one record each over [min
// start, max end) of the unit's records in the run; a shortfall against that
// span (windows with no records for the unit) becomes a device_absent gap,
// so usage + idle + gap = window holds for the merged window too. Record ids
// are recomputed. Only a consecutive run is merged, so merged windows
// never overlap other records of the same unit. Sealed batches are never
// merged or deleted to make room. Inventory records are never merged: a
// run that holds one keeps it exactly, in its place, and the records before
// and after it are merged apart, so no record crosses an inventory.
//
// If merging is not enough, Append returns ErrFull and stores nothing, the
// checkpoint included (the merges of that attempt are rolled back too and
// redone next time). The caller keeps metering in memory, raises its alert
// metric, and retries; after a restart it records a gap from the last
// durable checkpoint.
//
// # Damage and anchoring
//
// Open runs bbolt's consistency check (after checking the file is as long
// as its meta page says, and with bbolt's panics and faults recovered). A
// damaged file is renamed <path>.corrupt-<UTC time>, kept as evidence
// (QuarantinedFile), and a new spool starts in the needs-anchor state.
// A pending entry that does not decode into valid records is moved to the
// quarantine bucket when sealing or merging reaches it, and the rest goes
// on; a batch whose bytes no longer hash to its stored hash is moved there
// when Unacked reaches it, and the spool needs an anchor (ErrNeedsAnchor).
//
// Anchor(head, head_hash, last_window_end) continues the chain from the
// authority's head: batches it holds are acknowledged, the records of
// those after it go back to pending to be sealed again (and, for the
// operator's re-anchor, those of dead letters), and the time from the
// authority's last window end to the first window still pending is stored
// as spool_lost gap records, one per unit and metering window
// (Options.Window); when nothing is pending yet, with the next Append.
// Requeue moves dead letters back among the unacknowledged batches, byte
// for byte. Verify checks all of it without changing anything.
//
// # Compaction
//
// bbolt files never shrink. Compact rewrites the live data into a new file
// and renames it over the old one; Open does so itself when the file is over
// 64 MiB and more than four times the live data.
package spool
