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
	"github.com/gpumeter/gpumeter/protocol"
)

// Node is a registered node.
type Node struct {
	ID       string
	Provider string
	// Forked: the node is flagged for review because a second copy of it
	// signed (docs/protocol.md, "Second signers"). Its stored chain keeps
	// delivering; node unfork clears the flag.
	Forked   bool
	HeadSeq  uint64
	HeadHash string
	// LastWindowEnd is the latest window end of the node's stored usage,
	// idle and gap records (zero: none).
	LastWindowEnd time.Time
	// GPUs are the GPUs registered to the node, those whose registration
	// ended (Retired) included while no other node holds them.
	GPUs []GPU
	// Instances are the copies of the node's agent the authority heard
	// from (Nodes and NodeInstances fill it; Node does not).
	Instances []Instance
}

// Instance is one copy of a node's agent, by the instance id its batches
// carry ("" for agents that send none).
type Instance struct {
	ID        string    `json:"instance"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Accepted  int64     `json:"accepted_batches"`
	Refused   int64     `json:"refused_batches"`
}

// Key is a node's public key.
type Key struct {
	ID      string
	Node    string
	Public  ed25519.PublicKey
	Created time.Time
	// ActiveFrom is the first instant a window signed by the key may begin.
	ActiveFrom time.Time
	RevokedAt  time.Time // zero: not revoked
}

// RevokedAsOf says whether the key may no longer sign at now.
func (k Key) RevokedAsOf(now time.Time) bool {
	return !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt)
}

// GPU is a GPU as the authority registers it: its canonical UUID, its
// model (an id of the authority's model table: the caller resolves it,
// the store refuses none but an empty one) and when it entered service.
type GPU struct {
	UUID  string `json:"uuid"`
	Model string `json:"model"`
	// Registered bounds the first window paid for the GPU; zero: the
	// registration's Since.
	Registered time.Time `json:"registered"`
	// Retired ends the registration (node remove-gpu): the node's records
	// ending after it are refused. Zero: registered.
	Retired time.Time `json:"retired,omitzero"`
}

// GPUsOf is len(uuids) GPUs of one model, registered at the
// registration's Since.
func GPUsOf(model string, uuids ...string) []GPU {
	out := make([]GPU, len(uuids))
	for i, u := range uuids {
		out[i] = GPU{UUID: u, Model: model}
	}
	return out
}

// Registration is a node to register.
type Registration struct {
	ID, Provider string
	Key          ed25519.PublicKey
	GPUs         []GPU
	// Since is when the node entered service, as the operator attests: the
	// registration time of its GPUs and the activation of its first key.
	// Zero: now. It may not be after now.
	Since time.Time
}

// RegisterNode adds a node with its first key and its GPUs, in one
// transaction. GPU UUIDs are stored in canonical form (a case or white
// space variant is the same GPU). It refuses an invalid node or provider
// name, a node id or key already registered and a GPU registered to any
// node (ErrGPUClaimed names the owner).
//
// The checks read before they write; on PostgreSQL a registration racing
// past them is stopped by the unique keys (the later one waits for the
// earlier to commit, then fails its insert), and that failure is answered
// with the same error the check gives. GPUs are inserted in sorted order so
// that two registrations waiting on each other's GPUs cannot deadlock.
func (s *Store) RegisterNode(ctx context.Context, reg Registration, now time.Time) error {
	id := reg.ID
	if err := protocol.CheckName("node id", id); err != nil {
		return fmt.Errorf("register node: %w: %v", ErrInvalidRegistration, err)
	}
	if err := protocol.CheckName("provider", reg.Provider); err != nil {
		return fmt.Errorf("register node %q: %w: %v", id, ErrInvalidRegistration, err)
	}
	since, err := sinceOf(reg.Since, now)
	if err != nil {
		return fmt.Errorf("register node %q: %w", id, err)
	}
	gpus, err := canonicalGPUs(reg.GPUs, since, now)
	if err != nil {
		return fmt.Errorf("register node %q: %w", id, err)
	}
	if len(gpus) == 0 {
		return fmt.Errorf("register node %q: %w: at least one GPU is required", id, ErrInvalidRegistration)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM nodes WHERE id = ?`, id).Scan(&n); err != nil {
			return fmt.Errorf("register node %q: %w", id, err)
		}
		if n > 0 {
			return fmt.Errorf("register node %q: %w", id, ErrNodeExists)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO nodes (id, provider, created) VALUES (?, ?, ?)`, id, reg.Provider, now.UnixMilli()); err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("register node %q: %w (concurrently)", id, ErrNodeExists)
			}
			return fmt.Errorf("register node %q: %w", id, err)
		}
		if err := s.insertGPUs(ctx, tx, id, gpus); err != nil {
			return fmt.Errorf("register node %q: %w", id, err)
		}
		if err := s.addKey(ctx, tx, id, reg.Key, since, now); err != nil {
			return err
		}
		return s.recordAction(ctx, tx, ActionRegister, id, map[string]any{
			"provider": reg.Provider, "key_id": signing.KeyID(reg.Key), "since": since.UTC(), "gpus": gpus}, now)
	})
}

// AddGPUs registers more GPUs to a registered node (a GPU installed after
// the node was registered), under the same rules as RegisterNode.
func (s *Store) AddGPUs(ctx context.Context, node string, gpus []GPU, now time.Time) error {
	gs, err := canonicalGPUs(gpus, now, now)
	if err != nil {
		return fmt.Errorf("add GPUs to node %q: %w", node, err)
	}
	if len(gs) == 0 {
		return fmt.Errorf("add GPUs to node %q: %w: no GPU given", node, ErrInvalidRegistration)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		// Lock the node's row (PostgreSQL refuses FOR UPDATE with an
		// aggregate such as COUNT).
		if err := s.lockNode(ctx, tx, node); err != nil {
			return fmt.Errorf("add GPUs to node %q: %w", node, err)
		}
		if err := s.insertGPUs(ctx, tx, node, gs); err != nil {
			return fmt.Errorf("add GPUs to node %q: %w", node, err)
		}
		return s.recordAction(ctx, tx, ActionAddGPU, node, map[string]any{"gpus": gs}, now)
	})
}

// sinceOf resolves a registration's Since: zero is now, the future is
// refused (an operator cannot pre-date what has not happened yet).
func sinceOf(since, now time.Time) (time.Time, error) {
	if since.IsZero() {
		return now, nil
	}
	if since.After(now) {
		return time.Time{}, fmt.Errorf("%w: since %s is in the future", ErrInvalidRegistration, since.UTC().Format(time.RFC3339))
	}
	return since, nil
}

// canonicalGPUs checks and canonicalizes gpus, sorted by UUID, refusing a
// GPU listed twice (in any spelling), one without a model, and a
// registration time in the future.
func canonicalGPUs(gpus []GPU, since, now time.Time) ([]GPU, error) {
	out := make([]GPU, 0, len(gpus))
	for _, g := range gpus {
		u, err := protocol.CanonicalGPUUUID(g.UUID)
		if err != nil {
			return nil, fmt.Errorf("%w: GPU %v", ErrInvalidRegistration, err)
		}
		if g.Model == "" {
			return nil, fmt.Errorf("%w: GPU %s has no model", ErrInvalidRegistration, u)
		}
		at := g.Registered
		if at.IsZero() {
			at = since
		}
		if at.After(now) {
			return nil, fmt.Errorf("%w: GPU %s registered in the future", ErrInvalidRegistration, u)
		}
		out = append(out, GPU{UUID: u, Model: g.Model, Registered: at})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	for i := 1; i < len(out); i++ {
		if out[i].UUID == out[i-1].UUID {
			return nil, fmt.Errorf("%w: GPU %s listed twice", ErrInvalidRegistration, out[i].UUID)
		}
	}
	return out, nil
}

// insertGPUs inserts sorted, canonical gpus for node, each with the
// layouts node reported for it before (adoptReported).
func (s *Store) insertGPUs(ctx context.Context, tx *sql.Tx, node string, gpus []GPU) error {
	for _, g := range gpus {
		var (
			owner, model string
			reg          int64
			retired      sql.NullInt64
		)
		err := s.queryRowTx(ctx, tx, `SELECT node_id, model, registered_ms, retired_ms FROM node_gpus WHERE gpu_uuid = ?`+s.d.forUpdate, g.UUID).
			Scan(&owner, &model, &reg, &retired)
		switch {
		case err == nil && !retired.Valid:
			return fmt.Errorf("GPU %s: %w (node %q)", g.UUID, ErrGPUClaimed, owner)
		case err == nil:
			if err := s.reRegisterGPU(ctx, tx, node, g, owner, model, reg, retired.Int64); err != nil {
				return fmt.Errorf("GPU %s: %w", g.UUID, err)
			}
			if err := s.adoptReported(ctx, tx, node, g); err != nil {
				return err
			}
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("GPU %s: %w", g.UUID, err)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO node_gpus (gpu_uuid, node_id, model, registered_ms) VALUES (?, ?, ?, ?)`,
			g.UUID, node, g.Model, g.Registered.UnixMilli()); err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("GPU %s: %w (by a concurrent registration)", g.UUID, ErrGPUClaimed)
			}
			return fmt.Errorf("GPU %s: %w", g.UUID, err)
		}
		if err := s.adoptReported(ctx, tx, node, g); err != nil {
			return err
		}
	}
	return nil
}

// AddKey registers another key for a node (rotation), active for windows
// from activeFrom on (zero: now; never after now). Earlier keys stay valid
// until revoked, so batches in flight still verify.
func (s *Store) AddKey(ctx context.Context, node string, pub ed25519.PublicKey, activeFrom, now time.Time) (string, error) {
	from, err := sinceOf(activeFrom, now)
	if err != nil {
		return "", fmt.Errorf("add key to node %q: %w", node, err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := s.queryRowTx(ctx, tx, `SELECT COUNT(*) FROM nodes WHERE id = ?`, node).Scan(&n); err != nil {
			return fmt.Errorf("add key to node %q: %w", node, err)
		}
		if n == 0 {
			return fmt.Errorf("add key to node %q: %w", node, ErrNodeNotFound)
		}
		if err := s.addKey(ctx, tx, node, pub, from, now); err != nil {
			return err
		}
		return s.recordAction(ctx, tx, ActionKeyRotate, node, map[string]any{
			"key_id": signing.KeyID(pub), "active_from": from.UTC()}, now)
	})
	if err != nil {
		return "", err
	}
	return signing.KeyID(pub), nil
}

func (s *Store) addKey(ctx context.Context, tx *sql.Tx, node string, pub ed25519.PublicKey, activeFrom, now time.Time) error {
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
	_, err := s.exec(ctx, tx, `INSERT INTO node_keys (key_id, node_id, public_key, created, active_from_ms) VALUES (?, ?, ?, ?, ?)`,
		id, node, signing.EncodePublicKey(pub), now.UnixMilli(), activeFrom.UnixMilli())
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
		var (
			node    string
			revoked sql.NullInt64
		)
		err := s.queryRowTx(ctx, tx, `SELECT node_id, revoked_at FROM node_keys WHERE key_id = ?`+s.d.forUpdate, keyID).Scan(&node, &revoked)
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
		return s.recordAction(ctx, tx, ActionKeyRevoke, node, map[string]any{"key_id": keyID, "revoked_at": at.UTC()}, at)
	})
}

// Key looks a key up by id (ErrKeyNotFound if unknown).
func (s *Store) Key(ctx context.Context, keyID string) (Key, error) {
	var (
		k       = Key{ID: keyID}
		b64     string
		created int64
		active  int64
		revoked sql.NullInt64
	)
	err := s.queryRow(ctx, `SELECT node_id, public_key, created, active_from_ms, revoked_at FROM node_keys WHERE key_id = ?`, keyID).
		Scan(&k.Node, &b64, &created, &active, &revoked)
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
	k.ActiveFrom = time.UnixMilli(active).UTC()
	if revoked.Valid {
		k.RevokedAt = time.UnixMilli(revoked.Int64).UTC()
	}
	return k, nil
}

// Node reads a node with its GPUs (ErrNodeNotFound if unknown).
func (s *Store) Node(ctx context.Context, id string) (Node, error) {
	n := Node{ID: id}
	var last int64
	err := s.queryRow(ctx, `SELECT provider, forked, head_seq, head_hash, last_window_end_ms FROM nodes WHERE id = ?`, id).
		Scan(&n.Provider, &n.Forked, &n.HeadSeq, &n.HeadHash, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("read node %q: %w", id, ErrNodeNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node %q: %w", id, err)
	}
	if last > 0 {
		n.LastWindowEnd = msTime(last)
	}
	rows, err := s.query(ctx, `SELECT gpu_uuid, model, registered_ms, retired_ms FROM node_gpus WHERE node_id = ? ORDER BY gpu_uuid`, id)
	if err != nil {
		return Node{}, fmt.Errorf("read GPUs of node %q: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			g       GPU
			reg     int64
			retired sql.NullInt64
		)
		if err := rows.Scan(&g.UUID, &g.Model, &reg, &retired); err != nil {
			return Node{}, fmt.Errorf("read GPUs of node %q: %w", id, err)
		}
		g.Registered = time.UnixMilli(reg).UTC()
		if retired.Valid {
			g.Retired = msTime(retired.Int64)
		}
		n.GPUs = append(n.GPUs, g)
	}
	if err := rows.Err(); err != nil {
		return Node{}, fmt.Errorf("read GPUs of node %q: %w", id, err)
	}
	return n, nil
}
