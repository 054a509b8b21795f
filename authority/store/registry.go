package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/gpumeter/gpumeter/metering/signing"
)

// Node is a registered node.
type Node struct {
	ID       string
	Provider string
	Forked   bool
	HeadSeq  uint64
	HeadHash string
	GPUs     []string
}

// Key is a node's public key.
type Key struct {
	ID        string
	Node      string
	Public    ed25519.PublicKey
	Created   time.Time
	RevokedAt time.Time // zero: not revoked
}

// RevokedAsOf says whether the key may no longer sign at now.
func (k Key) RevokedAsOf(now time.Time) bool {
	return !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt)
}

// RegisterNode adds a node with its first key and its GPUs, in one
// transaction. It refuses a node id or key already registered and a GPU
// UUID registered to any node (ErrGPUClaimed names the owner).
//
// The checks read before they write; on PostgreSQL a registration racing
// past them is stopped by the unique keys (the later one waits for the
// earlier to commit, then fails its insert), and that failure is answered
// with the same error the check gives. GPUs are inserted in sorted order so
// that two registrations waiting on each other's GPUs cannot deadlock.
func (s *Store) RegisterNode(ctx context.Context, id, provider string, pub ed25519.PublicKey, gpus []string, now time.Time) error {
	if id == "" || provider == "" || len(gpus) == 0 {
		return fmt.Errorf("register node %q: id, provider and at least one GPU are required", id)
	}
	sorted := append([]string(nil), gpus...)
	sort.Strings(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return fmt.Errorf("register node %q: GPU %s listed twice", id, sorted[i])
		}
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM nodes WHERE id = ?`, id).Scan(&n); err != nil {
			return fmt.Errorf("register node %q: %w", id, err)
		}
		if n > 0 {
			return fmt.Errorf("register node %q: %w", id, ErrNodeExists)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO nodes (id, provider, created) VALUES (?, ?, ?)`, id, provider, now.UnixMilli()); err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("register node %q: %w (concurrently)", id, ErrNodeExists)
			}
			return fmt.Errorf("register node %q: %w", id, err)
		}
		for _, g := range sorted {
			var owner string
			err := s.queryRowTx(ctx, tx, `SELECT node_id FROM node_gpus WHERE gpu_uuid = ?`, g).Scan(&owner)
			switch {
			case err == nil:
				return fmt.Errorf("register node %q: GPU %s: %w (node %q)", id, g, ErrGPUClaimed, owner)
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("register node %q: GPU %s: %w", id, g, err)
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO node_gpus (gpu_uuid, node_id) VALUES (?, ?)`, g, id); err != nil {
				if s.d.isUnique(err) {
					return fmt.Errorf("register node %q: GPU %s: %w (by a concurrent registration)", id, g, ErrGPUClaimed)
				}
				return fmt.Errorf("register node %q: GPU %s: %w", id, g, err)
			}
		}
		return s.addKey(ctx, tx, id, pub, now)
	})
}

// AddKey registers another key for a node (rotation). Earlier keys stay
// valid until revoked, so batches in flight still verify.
func (s *Store) AddKey(ctx context.Context, node string, pub ed25519.PublicKey, now time.Time) (string, error) {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM nodes WHERE id = ?`, node).Scan(&n); err != nil {
			return fmt.Errorf("add key to node %q: %w", node, err)
		}
		if n == 0 {
			return fmt.Errorf("add key to node %q: %w", node, ErrNodeNotFound)
		}
		return s.addKey(ctx, tx, node, pub, now)
	})
	if err != nil {
		return "", err
	}
	return signing.KeyID(pub), nil
}

func (s *Store) addKey(ctx context.Context, tx *sql.Tx, node string, pub ed25519.PublicKey, now time.Time) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("add key to node %q: public key has %d bytes, want %d", node, len(pub), ed25519.PublicKeySize)
	}
	id := signing.KeyID(pub)
	var n int
	if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM node_keys WHERE key_id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("add key %s to node %q: %w", id, node, err)
	}
	if n > 0 {
		return fmt.Errorf("add key %s to node %q: %w", id, node, ErrKeyExists)
	}
	_, err := s.exec(ctx, tx, `INSERT INTO node_keys (key_id, node_id, public_key, created) VALUES (?, ?, ?, ?)`,
		id, node, signing.EncodePublicKey(pub), now.UnixMilli())
	if err != nil {
		if s.d.isUnique(err) { // registered by a concurrent transaction
			return fmt.Errorf("add key %s to node %q: %w (concurrently)", id, node, ErrKeyExists)
		}
		return fmt.Errorf("add key %s to node %q: %w", id, node, err)
	}
	return nil
}

// RevokeKey revokes a key from at on: batches signed with it and received
// at or after at are refused. A key is revoked once; the time never moves
// (the key's row is locked while it is read, so of two concurrent revokes
// on PostgreSQL the second sees the first's time).
func (s *Store) RevokeKey(ctx context.Context, keyID string, at time.Time) error {
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		err := s.queryRowTx(ctx, tx, `SELECT revoked_at FROM node_keys WHERE key_id = ?`+s.d.forUpdate, keyID).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("revoke key %s: %w", keyID, ErrKeyNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke key %s: %w", keyID, err)
		}
		if revoked.Valid {
			return fmt.Errorf("revoke key %s: %w (at %s)", keyID, ErrKeyRevoked, time.UnixMilli(revoked.Int64).UTC().Format(time.RFC3339))
		}
		if _, err := s.exec(ctx, tx, `UPDATE node_keys SET revoked_at = ? WHERE key_id = ?`, at.UnixMilli(), keyID); err != nil {
			return fmt.Errorf("revoke key %s: %w", keyID, err)
		}
		return nil
	})
}

// Key looks a key up by id (ErrKeyNotFound if unknown).
func (s *Store) Key(ctx context.Context, keyID string) (Key, error) {
	var (
		k       = Key{ID: keyID}
		b64     string
		created int64
		revoked sql.NullInt64
	)
	err := s.queryRow(ctx, `SELECT node_id, public_key, created, revoked_at FROM node_keys WHERE key_id = ?`, keyID).
		Scan(&k.Node, &b64, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, fmt.Errorf("look up key %s: %w", keyID, ErrKeyNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("look up key %s: %w", keyID, err)
	}
	pub, err := signing.DecodePublicKey(b64)
	if err != nil {
		return Key{}, fmt.Errorf("look up key %s: stored key: %w", keyID, err)
	}
	k.Public = pub
	k.Created = time.UnixMilli(created).UTC()
	if revoked.Valid {
		k.RevokedAt = time.UnixMilli(revoked.Int64).UTC()
	}
	return k, nil
}

// Node reads a node with its GPUs (ErrNodeNotFound if unknown).
func (s *Store) Node(ctx context.Context, id string) (Node, error) {
	n := Node{ID: id}
	err := s.queryRow(ctx, `SELECT provider, forked, head_seq, head_hash FROM nodes WHERE id = ?`, id).
		Scan(&n.Provider, &n.Forked, &n.HeadSeq, &n.HeadHash)
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("read node %q: %w", id, ErrNodeNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node %q: %w", id, err)
	}
	rows, err := s.query(ctx, `SELECT gpu_uuid FROM node_gpus WHERE node_id = ? ORDER BY gpu_uuid`, id)
	if err != nil {
		return Node{}, fmt.Errorf("read GPUs of node %q: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return Node{}, fmt.Errorf("read GPUs of node %q: %w", id, err)
		}
		n.GPUs = append(n.GPUs, g)
	}
	if err := rows.Err(); err != nil {
		return Node{}, fmt.Errorf("read GPUs of node %q: %w", id, err)
	}
	return n, nil
}
