package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of the audit trail (audit_schema.go).
const (
	// MaxRefusalsPerNode is how many refusals are kept per node (and for
	// node "", the refusals of senders not authenticated): recording one
	// more deletes that node's oldest in the same transaction.
	MaxRefusalsPerNode = 10_000
	// MaxRefusalEnvelope is how much of a refused body is kept: its first
	// 64 KiB. Its SHA-256 and size are always those of the whole body read.
	MaxRefusalEnvelope = 64 << 10
	// DefaultRefusalLimit and MaxRefusalLimit bound a listing.
	DefaultRefusalLimit = 100
	MaxRefusalLimit     = MaxRefusalsPerNode
	// maxRefusalText bounds the detail and the remote address kept: both
	// may quote what the sender wrote.
	maxRefusalText = 2 << 10
)

// Refusal is one refused batch in the audit trail.
type Refusal struct {
	ID int64 `json:"id"`
	// Node is the authenticated node, "" when the batch was refused
	// before its signature was verified (then nothing in it is trusted,
	// and KeyID and FirstSeq are empty too).
	Node     string    `json:"node"`
	KeyID    string    `json:"key_id,omitempty"`
	FirstSeq uint64    `json:"first_seq,omitempty"`
	Received time.Time `json:"received"`
	Cause    string    `json:"cause"` // the problem type suffix (protocol causes)
	Detail   string    `json:"detail"`
	Remote   string    `json:"remote"` // the peer's address as the server saw it
	// SHA256 (hex) and Size are of the body as read; a body over the
	// server's limit (body-too-large) was read up to the limit only.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Envelope is the body's first MaxRefusalEnvelope bytes, Truncated
	// when that is not all of it. Listings leave it out (nil); Refusal
	// reads it.
	Envelope  []byte `json:"envelope,omitempty"`
	Truncated bool   `json:"truncated"`
}

// RefusalFilter selects refusals. Zero fields select everything.
type RefusalFilter struct {
	Node string
	// Unauthenticated selects the refusals of node "" (Node must be "").
	Unauthenticated bool
	Cause           string
	Since, Until    time.Time // received in [Since, Until)
	// Limit is the most returned, newest first: 0 is DefaultRefusalLimit,
	// above MaxRefusalLimit is MaxRefusalLimit.
	Limit int
}

// refusalsPerNode is the bound in force: MaxRefusalsPerNode, or what a
// test set.
func (s *Store) refusalsPerNode() int {
	if s.refusalCap > 0 {
		return s.refusalCap
	}
	return MaxRefusalsPerNode
}

// RecordRefusal adds r to the audit trail with body, the request body as
// read: its SHA-256, its size and its first MaxRefusalEnvelope bytes. Then
// it deletes r.Node's oldest refusals beyond MaxRefusalsPerNode, in the
// same transaction. r.ID, SHA256, Size, Envelope and Truncated are set
// here; Detail and Remote are cut to 2 KiB of valid UTF-8.
//
// Concurrent recorders of one node on PostgreSQL may leave the node a few
// rows over the bound until its next refusal: each trims what it sees
// committed. That is a bound on the disk, which is what it is for.
func (s *Store) RecordRefusal(ctx context.Context, r Refusal, body []byte) error {
	what := fmt.Sprintf("record refusal (%s) of node %q", r.Cause, r.Node)
	if r.Node == "" {
		r.KeyID, r.FirstSeq = "", 0
	}
	if r.Received.IsZero() {
		return fmt.Errorf("%s: received time is required", what)
	}
	sum := sha256.Sum256(body)
	r.SHA256, r.Size = hex.EncodeToString(sum[:]), int64(len(body))
	r.Envelope, r.Truncated = body, false
	if len(body) > MaxRefusalEnvelope {
		r.Envelope, r.Truncated = body[:MaxRefusalEnvelope], true
	}
	if r.Envelope == nil {
		r.Envelope = []byte{}
	}
	keep := s.refusalsPerNode()
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO refusals (node_id, key_id, first_seq, received_ms, cause, detail, remote,
			envelope_sha256, envelope_size, envelope, truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Node, cutText(r.KeyID), int64(r.FirstSeq), r.Received.UnixMilli(), cutText(r.Cause), cutText(r.Detail),
			cutText(r.Remote), r.SHA256, r.Size, r.Envelope, r.Truncated)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		// The (keep+1)-th newest and everything older go.
		_, err = s.exec(ctx, tx, `DELETE FROM refusals WHERE node_id = ? AND id <=
			(SELECT id FROM refusals WHERE node_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, r.Node, r.Node, keep)
		if err != nil {
			return fmt.Errorf("%s: delete the oldest: %w", what, err)
		}
		return nil
	})
}

// cutText keeps at most maxRefusalText bytes of s, as valid UTF-8.
func cutText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxRefusalText {
		return s
	}
	s = s[:maxRefusalText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// refusalColumns are what scanRefusal reads, in order (the envelope last,
// only when asked).
const refusalColumns = `id, node_id, key_id, first_seq, received_ms, cause, detail, remote, envelope_sha256, envelope_size, truncated`

func scanRefusal(row rowScanner, envelope bool) (Refusal, error) {
	var (
		r        Refusal
		seq, rcv int64
	)
	dest := []any{&r.ID, &r.Node, &r.KeyID, &seq, &rcv, &r.Cause, &r.Detail, &r.Remote, &r.SHA256, &r.Size, &r.Truncated}
	if envelope {
		dest = append(dest, &r.Envelope)
	}
	if err := row.Scan(dest...); err != nil {
		return Refusal{}, err
	}
	r.FirstSeq, r.Received = uint64(seq), msTime(rcv)
	return r, nil
}

// ListRefusals lists the refusals f selects, newest first, without their
// envelopes (Refusal reads one).
func (s *Store) ListRefusals(ctx context.Context, f RefusalFilter) ([]Refusal, error) {
	if f.Unauthenticated && f.Node != "" {
		return nil, fmt.Errorf("list refusals: node %q and unauthenticated exclude each other", f.Node)
	}
	var w filter
	w.eq("node_id", f.Node)
	if f.Unauthenticated {
		w.add(`node_id = ?`, "")
	}
	w.eq("cause", f.Cause)
	if !f.Since.IsZero() {
		w.add(`received_ms >= ?`, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		w.add(`received_ms < ?`, f.Until.UnixMilli())
	}
	scan := func(row rowScanner) (Refusal, error) { return scanRefusal(row, false) }
	return queryList(ctx, s, "list refusals", scan, `SELECT `+refusalColumns+` FROM refusals`+w.where()+` ORDER BY id DESC LIMIT ?`,
		append(w.args, clampLimit(f.Limit, DefaultRefusalLimit, MaxRefusalLimit))...)
}

// Refusal reads one refusal with its envelope (as kept: its first
// MaxRefusalEnvelope bytes). ErrRefusalNotFound when there is none: it
// never existed, or the bound deleted it.
func (s *Store) Refusal(ctx context.Context, id int64) (Refusal, error) {
	r, err := scanRefusal(s.queryRow(ctx, `SELECT `+refusalColumns+`, envelope FROM refusals WHERE id = ?`, id), true)
	if errors.Is(err, sql.ErrNoRows) {
		return Refusal{}, fmt.Errorf("read refusal %d: %w", id, ErrRefusalNotFound)
	}
	if err != nil {
		return Refusal{}, fmt.Errorf("read refusal %d: %w", id, err)
	}
	return r, nil
}
