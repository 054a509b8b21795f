package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/internal/tlog"
)

// Voucher movements: what a voucher leaf records (docs/protocol.md, "The
// verifiable log").
const (
	MoveIssue    = "issue"    // a voucher is issued: amount is its face
	MoveCharge   = "charge"   // a subsidy is paid from the voucher at ingest
	MoveHold     = "hold"     // as charge, but held for an operator's review
	MoveRelease  = "release"  // a held amount is approved: it stays paid
	MoveReturn   = "return"   // a held amount is rejected: it goes back to the voucher
	MoveActivate = "activate" // the voucher's status changes (amount 0)
	MoveSuspend  = "suspend"
	MoveRevoke   = "revoke"
)

// VoucherMovement is one change to a voucher's money or standing. Expiry
// writes nothing (a voucher stops paying at expires_ms, which its issue
// leaf carries), so it has no leaf of its own.
type VoucherMovement struct {
	Movement  string
	Voucher   string
	Entity    string
	AmountFen int64
	Record    string // the usage record paid for; "" for issue and status
	TimeMs    int64  // when the authority wrote it, Unix ms
	ExpiresMs int64  // issue: the voucher's expiry; 0 otherwise
}

// voucherFields are the leaf's lines after the kind, in order.
var voucherFields = []string{"movement", "voucher", "entity", "amount_fen", "record", "time_ms", "expires_ms"}

// Leaf is the movement's canonical leaf data: the kind line, then one
// "name value" line per field in voucherFields' order, each ending in a
// newline; an empty record is "-". Ids never hold spaces or newlines
// (protocol.CheckName, record UUIDs).
func (m VoucherMovement) Leaf() []byte {
	rec := m.Record
	if rec == "" {
		rec = "-"
	}
	vals := []string{m.Movement, m.Voucher, m.Entity, strconv.FormatInt(m.AmountFen, 10), rec,
		strconv.FormatInt(m.TimeMs, 10), strconv.FormatInt(m.ExpiresMs, 10)}
	var b bytes.Buffer
	b.WriteString(tlog.KindVoucher + "\n")
	for i, f := range voucherFields {
		fmt.Fprintf(&b, "%s %s\n", f, vals[i])
	}
	return b.Bytes()
}

// ParseVoucherLeaf reads a voucher leaf back; it refuses anything Leaf
// would not have written.
func ParseVoucherLeaf(data []byte) (VoucherMovement, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) != len(voucherFields)+2 || lines[0] != tlog.KindVoucher || lines[len(lines)-1] != "" {
		return VoucherMovement{}, fmt.Errorf("voucher leaf: want %q and %d field lines, each ending in a newline", tlog.KindVoucher, len(voucherFields))
	}
	vals := make([]string, len(voucherFields))
	for i, f := range voucherFields {
		v, ok := strings.CutPrefix(lines[i+1], f+" ")
		if !ok || v == "" || strings.Contains(v, " ") {
			return VoucherMovement{}, fmt.Errorf("voucher leaf: line %d: want %q and a value, got %q", i+2, f, lines[i+1])
		}
		vals[i] = v
	}
	m := VoucherMovement{Movement: vals[0], Voucher: vals[1], Entity: vals[2], Record: vals[4]}
	if m.Record == "-" {
		m.Record = ""
	}
	for _, n := range []struct {
		at  int
		dst *int64
	}{{3, &m.AmountFen}, {5, &m.TimeMs}, {6, &m.ExpiresMs}} {
		v, err := strconv.ParseInt(vals[n.at], 10, 64)
		if err != nil {
			return VoucherMovement{}, fmt.Errorf("voucher leaf: %s %q is not an integer", voucherFields[n.at], vals[n.at])
		}
		*n.dst = v
	}
	if !bytes.Equal(m.Leaf(), data) {
		return VoucherMovement{}, fmt.Errorf("voucher leaf: not in canonical form")
	}
	return m, nil
}

// logVoucher queues a voucher movement's leaf in tx.
func (s *Store) logVoucher(tx *sql.Tx, m VoucherMovement) {
	s.logLeaf(tx, tlog.KindVoucher, m.Leaf(), nil)
}

// logCharges queues a leaf per grant of the charges billed at ingest:
// charge, or hold for a held subsidy.
func (s *Store) logCharges(tx *sql.Tx, charges []billing.Charge, holds map[string]string, now time.Time) {
	for _, c := range charges {
		mv := MoveCharge
		if _, ok := holds[c.RecordID]; ok {
			mv = MoveHold
		}
		for _, g := range c.Grants {
			s.logVoucher(tx, VoucherMovement{Movement: mv, Voucher: g.Voucher, Entity: c.Entity,
				AmountFen: int64(g.Amount), Record: c.RecordID, TimeMs: now.UnixMilli()})
		}
	}
}

// logDecision queues a leaf per grant of a held charge being decided:
// release when approved, return when rejected. Called before the grants
// are returned (and deleted).
func (s *Store) logDecision(ctx context.Context, tx *sql.Tx, recordID, entity, status string, now time.Time) error {
	mv := MoveRelease
	if status == billing.ReviewRejected {
		mv = MoveReturn
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT voucher_id, amount_fen FROM grants WHERE record_id = ? ORDER BY voucher_id`), recordID)
	if err != nil {
		return fmt.Errorf("read grants for the log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m := VoucherMovement{Movement: mv, Entity: entity, Record: recordID, TimeMs: now.UnixMilli()}
		if err := rows.Scan(&m.Voucher, &m.AmountFen); err != nil {
			return fmt.Errorf("read grants for the log: %w", err)
		}
		s.logVoucher(tx, m)
	}
	return rows.Err()
}

// logVoucherStatus queues the leaf of a voucher's status change.
func (s *Store) logVoucherStatus(ctx context.Context, tx *sql.Tx, id, status string, now time.Time) error {
	mv := map[string]string{billing.VoucherActive: MoveActivate, billing.VoucherSuspended: MoveSuspend, billing.VoucherRevoked: MoveRevoke}[status]
	m := VoucherMovement{Movement: mv, Voucher: id, TimeMs: now.UnixMilli()}
	if err := s.queryRowTx(ctx, tx, `SELECT entity_id FROM vouchers WHERE id = ?`, id).Scan(&m.Entity); err != nil {
		return fmt.Errorf("read voucher %q for the log: %w", id, err)
	}
	s.logVoucher(tx, m)
	return nil
}
