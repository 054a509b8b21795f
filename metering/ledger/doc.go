// Package ledger seals closed windows' records into signed, chained batches
// and opens (verifies, then decodes) them on the authority's side.
//
// # Sealing
//
// Sealer.Seal numbers the records (Seq = firstSeq + i, on a copy), marshals
// the Batch payload once, signs those exact bytes as a DSSE envelope
// (payloadType PayloadType, one signature whose keyid is KeyID of the
// node's key) and returns the envelope's JSON with the batch hash
// (sha256 of the payload). The caller (metering/spool) stores the envelope
// bytes; a resend sends the same bytes, so a batch's hash never changes.
// Seal refuses a batch that Open would refuse.
//
// # Opening
//
// Open checks, in the protocol's order, and stops at the first failure:
//
//  1. the envelope is strict JSON with the batch payloadType, one signature,
//     and standard base64 payload and signature (ErrMalformed);
//  2. the signature's keyid is known (ErrUnknownKey) and not revoked
//     (ErrRevokedKey);
//  3. the signature verifies over the DSSE PAE of the exact payload bytes
//     (ErrBadSignature) -- nothing has been parsed from the payload yet;
//  4. the payload decodes strictly into Batch: a repeated member in any
//     object is refused (ErrDuplicateKey; encoding/json would keep the last
//     one); unknown members, invalid UTF-8 and trailing data are refused
//     (ErrMalformed); member names match exactly, so "GPU_MS" is an unknown
//     member, not gpu_ms; and its key_id is the signature's;
//  5. the batch's node, and every record's node, is the key's node
//     (ErrNodeMismatch);
//  6. structure (ErrInvalidRecord): 1..MaxRecordsPerBatch records,
//     first_seq >= 1, last_seq = first_seq + len - 1, record i has seq
//     first_seq + i;
//  7. each record on its own (check.go): node, provider and tenant follow
//     protocol.CheckName (ErrInvalidName); a known kind, gpu_ms >= 0 and
//     window_end > window_start (ErrInvalidRecord); usage has a tenant and
//     no gap reason, idle and gap have no tenant, a gap has a known reason
//     (ErrKindFields); UUIDs are canonical and a whole GPU's unit is its
//     parent (ErrInvalidUUID); the slice is a share of one GPU, 1/1 for a
//     whole GPU (ErrSliceMismatch); utilization is 0-100 and energy >= 0,
//     or -1 for unknown (ErrInvalidValue); an inventory record is an instant
//     carrying a well-formed inventory and nothing else (ErrKindFields,
//     ErrInvalidInventory).
//
// Chain, sequence and per-window checks need the authority's store and are
// the authority's job.
//
// Errors are Cause values (wrapped with detail): errors.Is(err,
// ledger.ErrBadSignature), or errors.As(err, &cause) to get the protocol's
// problem-type suffix. An error that is not a Cause (from KeyLookup) is an
// internal failure, not the sender's fault.
//
// It must never re-marshal a payload to verify or hash it, and never decode
// a payload before its signature has verified.
package ledger
