// Package store is the voucher authority's durable state: the node registry
// (nodes, their keys and GPUs), accepted batches and their records, and the
// per-unit window totals that bound GPU time by wall time.
//
// Its one job is to keep the authority's invariants true under any
// interleaving of requests and processes:
//
//   - a batch is stored whole or not at all: ingest is ONE transaction that
//     re-reads the node's head, checks sequence, chain, duplicate and fork,
//     checks the records against the stored per-unit windows, then inserts
//     the batch, its records and the window totals and advances the head;
//   - nothing is stored twice: UNIQUE(node_id, first_seq) on batches,
//     UNIQUE(node_id, seq) and the record id as primary key on records make
//     double storage impossible even if two writers raced past the checks.
//     Dedup never relies on a cache with a TTL;
//   - a GPU UUID belongs to one node (primary key of node_gpus).
//
// # Wall-time rule
//
// For a unit (gpu_uuid), each distinct record interval [window_start,
// window_end) is a row of unit_windows holding the sum of gpu_ms of all its
// stored records (usage, idle and gap alike). The sum may never exceed the
// interval's length, and two distinct intervals of one unit may never
// overlap (a partial overlap is refused as over-wall-time). Together these
// bound the GPU time of a unit over any period by the period's length,
// which is what the meter's invariant (usage + idle + gap = window) gives
// for honest nodes: windows are aligned, the first and last of a run are
// partial, and runs of one node never overlap in time.
//
// # Drivers
//
// SQLite (modernc.org/sqlite, pure Go, one file) and PostgreSQL (pgx's
// database/sql driver) run the same migrations and statements: the schema
// uses portable types (BIGINT, TEXT, BOOLEAN; byte strings are the
// dialect's blob type, BLOB or BYTEA) and statements are written with '?'
// placeholders that the dialect rebinds to $N.
//
// SQLite runs in WAL mode with synchronous=FULL, foreign keys on and a busy
// timeout; write transactions take the database's one write lock at BEGIN,
// so writers, in this process or another, never interleave.
//
// PostgreSQL runs READ COMMITTED, and writers do interleave, in this
// process (one pool) and between processes (several authorities on one
// database). What keeps the invariants is the locks each write path takes,
// always in this order, so none can wait on another in a cycle:
//
//  1. the node's row, FOR UPDATE, first in every ingest: a second ingest of
//     the node waits, then reads the head the first committed (so it sees
//     a duplicate, or continues the chain);
//  2. an advisory lock per unit UUID that is not one of the node's own
//     registered GPUs, in ascending key order (two nodes may name one MIG
//     UUID; the overlap check reads before it writes);
//  3. the rows billing reads to write (billing.go), after the above.
//
// Registration and key changes read, then insert under the unique keys: a
// racing duplicate waits for the first to commit and fails its insert,
// which is answered as the check would have (ErrNodeExists, ErrGPUClaimed,
// ErrKeyExists); GPUs are inserted in sorted order. A revocation reads its
// key's row FOR UPDATE. Migrations run under a transaction-scoped advisory
// lock, so processes starting at once apply each one once.
//
// The PostgreSQL password is never in an error or in String (the name the
// authority logs).
//
// It must never decide protocol policy beyond these invariants (signature
// and record validity are checked before a batch reaches it), and never
// store any part of a rejected batch among the accepted ones; the one
// write a rejection makes to them is flagging a node as forked. A refused
// batch goes to the audit trail only (audit.go: table refusals, its first
// 64 KiB, bounded per node), which nothing reads to decide anything.
//
// # Review queue
//
// A charge whose subsidy is held (charges.review 'held', a reviews row)
// keeps its grants: the vouchers paid it and the yearly counters count it
// until an operator decides (review.go). Approving changes no money.
// Rejecting returns each grant to its voucher and takes it off the yearly
// counter of the charge's program, entity and year, deletes the grants and
// sets the charge's subsidy to 0, in one transaction that locks the entity
// first, then its vouchers, then its carries: billing's order (billing.go),
// so it cannot deadlock with an ingest billing the same entity. A review is
// decided once.
package store
