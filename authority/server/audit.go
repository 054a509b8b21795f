package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// Auditor keeps the refusals of POST /v1/batches: the audit trail
// (*store.Store is one: a bounded table of refusals, with the body's hash,
// size and first 64 KiB).
type Auditor interface {
	RecordRefusal(ctx context.Context, r store.Refusal, body []byte) error
}

var _ Auditor = (*store.Store)(nil)

// auditTimeout bounds how long keeping a refusal may delay its answer.
const auditTimeout = 5 * time.Second

// audit keeps a refused batch with what is known of it: the node, key and
// first sequence once the batch was authenticated, the cause, the detail
// answered, the peer and the body as read. A failure is logged and
// counted, never answered: the sender's refusal is the same either way.
// It runs before the answer (a client that hung up does not cancel it),
// so whoever reads the answer can find the refusal.
func (s *Server) audit(r *http.Request, out ingest.Outcome, body []byte, p *protocol.Problem) {
	ref := store.Refusal{Node: out.Node, KeyID: out.KeyID, FirstSeq: out.FirstSeq, Received: time.Now(),
		Cause: p.Cause(), Detail: p.Detail, Remote: r.RemoteAddr}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.aud.RecordRefusal(ctx, ref, body); err != nil {
		s.m.unrecorded.Inc()
		s.log.Error("refused batch not kept in the audit trail", slog.String("cause", ref.Cause),
			slog.String("node", ref.Node), slog.Uint64("first_seq", ref.FirstSeq), slog.String("remote", ref.Remote),
			slog.Any("err", err))
	}
}
