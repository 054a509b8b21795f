package main

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gpumeter/gpumeter/bench/internal/authproc"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// checkResult is the end-of-run reckoning: every node's seqs 1..acked
// stored exactly once, and nothing else.
type checkResult struct {
	records, batches int64 // stored in all
	lost             int64 // acknowledged seqs not stored
	doubled          int64 // stored more than once, or stored beyond what was acknowledged
	headMismatches   int   // nodes whose stored or served head is not their acknowledged one
	problems         []string
}

func (r *checkResult) ok() bool { return r.lost == 0 && r.doubled == 0 && r.headMismatches == 0 }

func (r *checkResult) problem(format string, args ...any) {
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

// stored is one node's rows as the database has them.
type stored struct {
	records, distinct, batches int64
	minSeq, maxSeq, head       uint64
}

// check compares what every node had acknowledged with the database (read
// directly, not through the authority's code) and with every authority's
// GET /v1/nodes/{id}/head.
func (f *fleet) check(ctx context.Context, db authproc.Database) (*checkResult, error) {
	conn, err := sql.Open(db.SQLDriver(), db.Source)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	byNode := map[string]*stored{}
	get := func(id string) *stored {
		if byNode[id] == nil {
			byNode[id] = &stored{}
		}
		return byNode[id]
	}
	err = query(ctx, conn, `SELECT node_id, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM records GROUP BY node_id`,
		func(rows *sql.Rows) error {
			var id string
			var s stored
			if err := rows.Scan(&id, &s.records, &s.distinct, &s.minSeq, &s.maxSeq); err != nil {
				return err
			}
			n := get(id)
			n.records, n.distinct, n.minSeq, n.maxSeq = s.records, s.distinct, s.minSeq, s.maxSeq
			return nil
		})
	if err != nil {
		return nil, err
	}
	// perNode reads q's rows of (node id, number) into set.
	perNode := func(q string, set func(s *stored, v int64)) error {
		return query(ctx, conn, q, func(rows *sql.Rows) error {
			var id string
			var v int64
			if err := rows.Scan(&id, &v); err != nil {
				return err
			}
			set(get(id), v)
			return nil
		})
	}
	if err := perNode(`SELECT node_id, COUNT(*) FROM batches GROUP BY node_id`, func(s *stored, v int64) { s.batches = v }); err != nil {
		return nil, err
	}
	if err := perNode(`SELECT id, head_seq FROM nodes`, func(s *stored, v int64) { s.head = uint64(v) }); err != nil {
		return nil, err
	}

	r := &checkResult{}
	mine := map[string]bool{}
	for _, n := range f.nodes {
		mine[n.ID] = true
		s := get(n.ID)
		r.records += s.records
		r.batches += s.batches
		inRange := s.distinct
		if s.records > 0 && s.maxSeq > n.acked {
			// Rows past what was acknowledged: count exactly which seqs
			// of 1..acked are there.
			if err := conn.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(DISTINCT seq) FROM records WHERE node_id = ? AND seq BETWEEN 1 AND ?`),
				n.ID, n.acked).Scan(&inRange); err != nil {
				return nil, fmt.Errorf("count stored seqs of %s: %w", n.ID, err)
			}
			r.problem("%s: seqs up to %d stored, only up to %d acknowledged", n.ID, s.maxSeq, n.acked)
		}
		lost := int64(n.acked) - inRange
		doubled := (s.records - s.distinct) + (s.distinct - inRange)
		if lost != 0 || doubled != 0 {
			r.problem("%s: acknowledged 1..%d, stored %d rows of %d distinct seqs (%d..%d)", n.ID, n.acked, s.records, s.distinct, s.minSeq, s.maxSeq)
		}
		r.lost += lost
		r.doubled += doubled
		if s.batches != int64(n.batches) {
			r.problem("%s: %d batches acknowledged, %d stored", n.ID, n.batches, s.batches)
			r.headMismatches++
			continue
		}
		if s.head != n.acked {
			r.problem("%s: stored head %d, acknowledged %d", n.ID, s.head, n.acked)
			r.headMismatches++
			continue
		}
		for _, u := range f.urls { // every replica answers the database's head
			served, err := f.head(ctx, u, n.ID, n.Key)
			if err != nil {
				return nil, err
			}
			if served != n.acked {
				r.problem("%s: GET head at %s answers %d, acknowledged %d", n.ID, u, served, n.acked)
				r.headMismatches++
				break
			}
		}
	}
	for id, s := range byNode {
		if !mine[id] && s.records > 0 {
			r.problem("%s: %d records of a node the fleet does not have", id, s.records)
			r.doubled += s.records
		}
	}
	return r, nil
}

// head asks the authority at base for a node's head, in a read signed
// with the node's key.
func (f *fleet) head(ctx context.Context, base, id string, key ed25519.PrivateKey) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/nodes/"+url.PathEscape(id)+"/head", nil)
	if err != nil {
		return 0, err
	}
	keyID := signing.KeyID(key.Public().(ed25519.PublicKey))
	req.Header.Set("Authorization", protocol.SignRead(key, keyID, req.Method, req.URL.RequestURI(), time.Now()))
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("head of %s: status %d", id, resp.StatusCode)
	}
	var a struct {
		Head *uint64 `json:"head"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Head == nil {
		return 0, fmt.Errorf("head of %s: answer without a head (%v)", id, err)
	}
	return *a.Head, nil
}

func query(ctx context.Context, db *sql.DB, q string, row func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}
