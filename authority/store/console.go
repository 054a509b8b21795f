package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// Console roles (docs/console.md). An operator signs in with the
// operators' token; the other two sign in with a scoped console token.
const (
	RoleOperator = "operator"
	RoleProvider = "provider" // scope: the provider's name
	RoleEntity   = "entity"   // scope: the entity's id
)

// ConsoleTokenPrefix begins every console token, so that one found in a
// log or a paste is recognizable.
const ConsoleTokenPrefix = "gmc_"

// ErrConsoleToken is a console token or session that is unknown, revoked
// or expired: the caller signs in again.
var ErrConsoleToken = errors.New("console token or session not valid")

// ErrConsoleTokenNotFound is an unknown token id (revoke).
var ErrConsoleTokenNotFound = errors.New("no such console token")

// ConsoleToken is a scoped console token as listed: never its secret.
type ConsoleToken struct {
	ID      string    `json:"id"`
	Role    string    `json:"role"`
	Scope   string    `json:"scope"`
	Label   string    `json:"label"`
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// ConsoleSession is a signed-in browser. TokenID is "" for an operator.
type ConsoleSession struct {
	TokenID string
	Role    string
	Scope   string
	CSRF    string
	Expires time.Time
}

// HashSecret is the hex SHA-256 of a secret (a token or a session id), the
// only form the database keeps.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// RandomSecret is n random bytes in hex.
func RandomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// CreateConsoleToken makes a token for role (RoleProvider or RoleEntity)
// scoped to scope (a provider name, or an entity that exists) and returns
// it with its secret, which is shown once: only its hash is kept.
func (s *Store) CreateConsoleToken(ctx context.Context, role, scope, label string, now time.Time) (ConsoleToken, string, error) {
	const what = "create console token"
	switch role {
	case RoleProvider, RoleEntity:
	default:
		return ConsoleToken{}, "", invalidBilling(what, &billing.FieldError{Object: "console token", Field: "role",
			Msg: fmt.Sprintf("%q is not %q or %q", role, RoleProvider, RoleEntity)})
	}
	if err := protocol.CheckName("scope", scope); err != nil || scope == "" {
		msg := "required: the provider or entity the token may see"
		if err != nil {
			msg = err.Error()
		}
		return ConsoleToken{}, "", invalidBilling(what, &billing.FieldError{Object: "console token", Field: "scope", Msg: msg})
	}
	if err := protocol.CheckText("label", label, 200); err != nil && label != "" {
		return ConsoleToken{}, "", invalidBilling(what, &billing.FieldError{Object: "console token", Field: "label", Msg: err.Error()})
	}
	t := ConsoleToken{ID: "ct-" + RandomSecret(6), Role: role, Scope: scope, Label: label, Created: now.UTC().Truncate(time.Millisecond)}
	secret := ConsoleTokenPrefix + RandomSecret(32)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if role == RoleEntity {
			if err := s.mustExist(ctx, tx, "entities", "entity", scope); err != nil {
				return err
			}
		}
		_, err := s.exec(ctx, tx, `INSERT INTO console_tokens (id, role, scope, label, hash, created_ms) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, role, scope, label, HashSecret(secret), t.Created.UnixMilli())
		return err
	})
	if err != nil {
		return ConsoleToken{}, "", fmt.Errorf("%s: %w", what, err)
	}
	return t, secret, nil
}

// ConsoleTokens lists the console tokens, oldest first.
func (s *Store) ConsoleTokens(ctx context.Context) ([]ConsoleToken, error) {
	rows, err := s.query(ctx, `SELECT id, role, scope, label, created_ms, revoked_ms FROM console_tokens ORDER BY created_ms, id`)
	if err != nil {
		return nil, fmt.Errorf("list console tokens: %w", err)
	}
	out := []ConsoleToken{}
	err = scanAll(rows, func() error {
		var (
			t       ConsoleToken
			created int64
			revoked sql.NullInt64
		)
		if err := rows.Scan(&t.ID, &t.Role, &t.Scope, &t.Label, &created, &revoked); err != nil {
			return err
		}
		t.Created = msTime(created)
		if revoked.Valid {
			t.Revoked = msTime(revoked.Int64)
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list console tokens: %w", err)
	}
	return out, nil
}

// RevokeConsoleToken revokes a token at now and ends its sessions, in one
// transaction. Revoking a revoked token keeps its first revocation.
func (s *Store) RevokeConsoleToken(ctx context.Context, id string, now time.Time) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE console_tokens SET revoked_ms = COALESCE(revoked_ms, ?) WHERE id = ?`, now.UnixMilli(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: %q", ErrConsoleTokenNotFound, id)
		}
		_, err = s.exec(ctx, tx, `DELETE FROM console_sessions WHERE token_id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke console token: %w", err)
	}
	return nil
}

// consoleRowErr is the error of reading one live token or session row: no
// row is ErrConsoleToken (unknown, revoked or expired: the caller must not
// tell which), any other error is wrapped with what.
func consoleRowErr(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrConsoleToken
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ConsoleTokenBySecret finds the live token whose secret this is.
func (s *Store) ConsoleTokenBySecret(ctx context.Context, secret string) (ConsoleToken, error) {
	var (
		t       ConsoleToken
		created int64
	)
	err := s.queryRow(ctx, `SELECT id, role, scope, label, created_ms FROM console_tokens WHERE hash = ? AND revoked_ms IS NULL`,
		HashSecret(secret)).Scan(&t.ID, &t.Role, &t.Scope, &t.Label, &created)
	if err := consoleRowErr(err, "find console token"); err != nil {
		return ConsoleToken{}, err
	}
	t.Created = msTime(created)
	return t, nil
}

// CreateConsoleSession keeps a session under the hash of its id (the
// cookie's value), and drops expired ones.
func (s *Store) CreateConsoleSession(ctx context.Context, id string, sess ConsoleSession, now time.Time) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM console_sessions WHERE expires_ms <= ?`, now.UnixMilli()); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO console_sessions (id_hash, token_id, role, scope, csrf, created_ms, expires_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, HashSecret(id), sess.TokenID, sess.Role, sess.Scope, sess.CSRF, now.UnixMilli(), sess.Expires.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("create console session: %w", err)
	}
	return nil
}

// ConsoleSessionByID reads a live session: not expired at now, and, when
// signed in with a console token, that token not revoked.
func (s *Store) ConsoleSessionByID(ctx context.Context, id string, now time.Time) (ConsoleSession, error) {
	var (
		sess    ConsoleSession
		expires int64
	)
	err := s.queryRow(ctx, `SELECT s.token_id, s.role, s.scope, s.csrf, s.expires_ms FROM console_sessions s
		LEFT JOIN console_tokens t ON t.id = s.token_id
		WHERE s.id_hash = ? AND s.expires_ms > ? AND (s.token_id = '' OR (t.id IS NOT NULL AND t.revoked_ms IS NULL))`,
		HashSecret(id), now.UnixMilli()).Scan(&sess.TokenID, &sess.Role, &sess.Scope, &sess.CSRF, &expires)
	if err := consoleRowErr(err, "read console session"); err != nil {
		return ConsoleSession{}, err
	}
	sess.Expires = msTime(expires)
	return sess, nil
}

// DeleteConsoleSession ends a session (sign-out).
func (s *Store) DeleteConsoleSession(ctx context.Context, id string) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `DELETE FROM console_sessions WHERE id_hash = ?`, HashSecret(id))
		return err
	})
}
