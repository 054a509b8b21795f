// Package protocol is the wire contract between the agent and the voucher
// authority (docs/protocol.md), the one definition both binaries import:
// the usage record, the signed batch, the inventory a node reports, the
// answers of the authority's API and its problem causes, and the rules a
// name must follow to cross the wire.
//
// It holds types, constants and pure checks only: it must never do I/O
// (other than writing a problem to an http.ResponseWriter), never import
// another package of this module, and never change a field's JSON name or
// meaning within a payload type's version.
package protocol
