package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os/user"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Operator actions, as the audit trail names them.
const (
	ActionRegister      = "node register"
	ActionAddGPU        = "node add-gpu"
	ActionRemoveGPU     = "node remove-gpu"
	ActionUnfork        = "node unfork"
	ActionKeyRotate     = "key rotate"
	ActionKeyRevoke     = "key revoke"
	ActionReviewApprove = "review approve"
	ActionReviewReject  = "review reject"
)

// MaxActionLimit bounds one listing of operator actions.
const MaxActionLimit = 1000

// MaxReason bounds an operator's reason (node unfork), in bytes.
const MaxReason = 1000

// OperatorAction is one change an operator made, as the audit trail keeps
// it.
type OperatorAction struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Node   string    `json:"node,omitempty"`
	// Details is a JSON object: what the action changed.
	Details json.RawMessage `json:"details"`
}

// ActionFilter selects operator actions; zero fields select all. Limit 0
// is MaxActionLimit.
type ActionFilter struct {
	Node, Action string
	Limit        int
}

type actorKey struct{}

// WithActor names who acts in ctx for the audit trail of operator
// actions: the admin API names its token's caller. Without it, the
// actor is the operating system user running the process (the CLI's
// operator).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorOf is the actor WithActor set, or "user:NAME" of the process's
// operating system user ("user:uid-N" when the name is unknown).
func ActorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	u, err := user.Current()
	switch {
	case err != nil:
		return "user:unknown"
	case u.Username != "":
		return "user:" + u.Username
	default:
		return "user:uid-" + u.Uid
	}
}

// recordAction writes one operator action inside the action's
// transaction tx: it commits with the action or not at all.
func (s *Store) recordAction(ctx context.Context, tx *sql.Tx, action, node string, details any, now time.Time) error {
	d, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("audit %s: encode details: %w", action, err)
	}
	if _, err := s.exec(ctx, tx, `INSERT INTO operator_actions (at_ms, actor, action, node_id, details) VALUES (?, ?, ?, ?, ?)`,
		now.UnixMilli(), ActorOf(ctx), action, node, string(d)); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// OperatorActions lists operator actions, newest first.
func (s *Store) OperatorActions(ctx context.Context, f ActionFilter) ([]OperatorAction, error) {
	var w filter
	w.eq("node_id", f.Node)
	w.eq("action", f.Action)
	return queryList(ctx, s, "list operator actions", scanOperatorAction,
		`SELECT id, at_ms, actor, action, node_id, details FROM operator_actions`+w.where()+` ORDER BY id DESC LIMIT ?`,
		append(w.args, clampLimit(f.Limit, MaxActionLimit, MaxActionLimit))...)
}

func scanOperatorAction(row rowScanner) (OperatorAction, error) {
	var (
		a  OperatorAction
		at int64
		d  string
	)
	err := row.Scan(&a.ID, &at, &a.Actor, &a.Action, &a.Node, &d)
	a.At, a.Details = msTime(at), json.RawMessage(d)
	return a, err
}

// checkReason validates an operator's reason: required, at most
// MaxReason bytes of text without control characters but newlines and
// tabs.
func checkReason(reason string) error {
	switch {
	case strings.TrimSpace(reason) == "":
		return fmt.Errorf("%w: reason: required, say why", ErrInvalidRegistration)
	case len(reason) > MaxReason:
		return fmt.Errorf("%w: reason: %d bytes, at most %d", ErrInvalidRegistration, len(reason), MaxReason)
	case !utf8.ValidString(reason) || strings.ContainsFunc(reason, func(r rune) bool {
		return r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.In(r, unicode.Cf))
	}):
		return fmt.Errorf("%w: reason: must be UTF-8 text without control or format characters", ErrInvalidRegistration)
	}
	return nil
}
