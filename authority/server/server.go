package server

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpumeter/gpumeter/authority/ingest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/tlog"
	"github.com/gpumeter/gpumeter/protocol"
)

// DefaultMaxBodyBytes bounds a POSTed envelope (docs/protocol.md: 8 MiB).
const DefaultMaxBodyBytes = 8 << 20

// Options configure a Server.
type Options struct {
	Ingester     *ingest.Ingester
	Store        *store.Store
	Logger       *slog.Logger // nil: discard
	MaxBodyBytes int64        // 0: DefaultMaxBodyBytes
	// OperatorToken is the operators' bearer token (LoadAdminToken), which
	// reads every node's usage and head (read_auth.go); nil: only signed
	// reads are accepted.
	OperatorToken []byte
	// Clock is what signed reads' timestamps and key revocations are
	// checked against; nil: the real clock.
	Clock clock.Clock
	// Auditor keeps every refused batch (audit.go); nil: the Store.
	Auditor Auditor
	// LogSigner signs the verifiable log's checkpoints (log.go); nil: the
	// authority keeps no log, answers carry no receipt and the log's
	// endpoints answer 404.
	LogSigner *tlog.Signer
	// Admission bounds concurrent ingests (admission.go); zero fields: the
	// defaults for the Store's driver.
	Admission Admission
}

// Server holds the handlers and the metrics.
type Server struct {
	in      *ingest.Ingester
	st      *store.Store
	log     *slog.Logger
	maxBody int64
	m       *metrics
	mux     *http.ServeMux
	clock   clock.Clock
	// tokenSum is OperatorToken's SHA-256 (nil: none), as in Admin.
	tokenSum *[sha256.Size]byte
	aud      Auditor
	logKey   *tlog.Signer
	adm      *admitter
}

// New builds a Server.
func New(opts Options) (*Server, error) {
	if opts.Ingester == nil || opts.Store == nil {
		return nil, errors.New("new server: ingester and store are required")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("new server: negative max body size %d", opts.MaxBodyBytes)
	}
	s := &Server{in: opts.Ingester, st: opts.Store, log: opts.Logger, maxBody: opts.MaxBodyBytes, m: newMetrics(), clock: opts.Clock, aud: opts.Auditor, logKey: opts.LogSigner}
	adm, err := opts.Admission.withDefaults(opts.Store.Driver())
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.adm = newAdmitter(adm)
	if opts.OperatorToken != nil {
		if len(opts.OperatorToken) < MinAdminTokenLen {
			return nil, fmt.Errorf("new server: operator token has %d characters, want at least %d", len(opts.OperatorToken), MinAdminTokenLen)
		}
		sum := sha256.Sum256(opts.OperatorToken)
		s.tokenSum = &sum
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.aud == nil {
		s.aud = opts.Store
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.m.reg.MustRegister(newStoreCollector(opts.Store.Health, s.log))
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/batches", s.postBatch)
	s.mux.HandleFunc("GET /v1/nodes/{id}/head", s.getHead)
	s.mux.HandleFunc("GET /v1/usage", s.getUsage)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.logRoutes()
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	return s, nil
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) {
	if !s.admit(w, r) {
		return
	}
	defer s.adm.release()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, r, ingest.Outcome{}, body, protocol.NewProblem(protocol.BodyTooLarge,
				fmt.Sprintf("body exceeds %d bytes", s.maxBody)))
			return
		}
		s.reject(w, r, ingest.Outcome{}, body, protocol.NewProblem(protocol.Malformed, "reading the body failed"))
		return
	}
	out, err := s.in.Ingest(r.Context(), body)
	var p *protocol.Problem
	switch {
	case errors.As(err, &p):
		s.reject(w, r, out, body, p)
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	if out.Duplicate {
		s.m.accepted.WithLabelValues("duplicate").Inc()
	} else {
		s.m.accepted.WithLabelValues("stored").Inc()
		s.m.records.Add(float64(out.Records))
	}
	ans := protocol.BatchAnswer{Node: out.Node, Head: out.Head, Duplicate: out.Duplicate}
	if ans.Log, err = s.receipt(r, out.LogIndex); err != nil {
		// The batch is stored: the agent sends it again and gets a
		// duplicate's receipt.
		s.internal(w, r, err)
		return
	}
	writeJSON(w, ans)
}

// reject answers p and logs it once, with what is known of the batch, and
// keeps it in the audit trail with body (what was read of it).
func (s *Server) reject(w http.ResponseWriter, r *http.Request, out ingest.Outcome, body []byte, p *protocol.Problem) {
	s.m.rejected.WithLabelValues(p.Cause()).Inc()
	if p.Hold {
		s.m.held.WithLabelValues(out.Node, p.Cause()).Inc()
	}
	attrs := []any{
		slog.String("cause", p.Cause()), slog.String("node", out.Node),
		slog.String("key_id", out.KeyID), slog.Uint64("first_seq", out.FirstSeq),
		slog.String("remote", r.RemoteAddr), slog.String("detail", p.Detail),
	}
	switch {
	case out.Flagged:
		s.m.forks.Inc()
		s.log.Error("a second copy of the node signed a batch that conflicts with its stored chain; node flagged, its stored chain goes on",
			append(attrs, slog.String("instance", out.Instance))...)
	case p.Hold:
		s.log.Warn("batch held: the node keeps it and sends it again once the authority's facts allow it", attrs...)
	default:
		s.log.Warn("batch rejected", attrs...)
	}
	s.audit(r, out, body, p)
	s.writeProblem(w, p)
}

// writeProblem answers p with the authority's time (Problem.AuthorityTime):
// every problem of the delivery API carries it, so a node can tell its
// clock's skew.
func (s *Server) writeProblem(w http.ResponseWriter, p *protocol.Problem) {
	now := s.clock.Now().UTC()
	p.AuthorityTime = &now
	protocol.WriteProblem(w, p)
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.m.internals.Inc()
	s.log.Error("request failed", slog.String("path", r.URL.Path), slog.Any("err", err))
	s.writeProblem(w, protocol.NewProblem(protocol.Internal, "the authority failed to process the request; retry later"))
}

func (s *Server) getHead(w http.ResponseWriter, r *http.Request) {
	rd, ok := s.authRead(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !rd.mayRead(id) {
		s.forbidden(w, r, rd, id)
		return
	}
	n, err := s.st.Node(r.Context(), id)
	if errors.Is(err, store.ErrNodeNotFound) {
		s.writeProblem(w, protocol.NewProblem(protocol.NotFound, fmt.Sprintf("node %q is not registered", id)))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ans := protocol.HeadAnswer{Node: n.ID, Head: n.HeadSeq, HeadHash: n.HeadHash}
	if !n.LastWindowEnd.IsZero() {
		ans.LastWindowEnd = &n.LastWindowEnd
	}
	if ans.Log, err = s.receipt(r, nil); err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, ans)
}

// UsageReport is the answer of GET /v1/usage (and the CLI's usage).
type UsageReport struct {
	From       time.Time        `json:"from"`
	To         time.Time        `json:"to"`
	Rows       []store.UsageRow `json:"rows"`
	TotalGPUMs int64            `json:"total_gpu_ms"`
}

// NewUsageReport sums rows into a report.
func NewUsageReport(f store.UsageFilter, rows []store.UsageRow) UsageReport {
	rep := UsageReport{From: f.From.UTC(), To: f.To.UTC(), Rows: rows}
	for _, row := range rows {
		rep.TotalGPUMs += row.GPUMs
	}
	return rep
}

// ParsePeriod parses RFC 3339 from and to; to must be after from.
func ParsePeriod(from, to string) (time.Time, time.Time, error) {
	f, err := time.Parse(time.RFC3339, from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("from %q is not an RFC 3339 time", from)
	}
	t, err := time.Parse(time.RFC3339, to)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("to %q is not an RFC 3339 time", to)
	}
	if !t.After(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("to %s is not after from %s", to, from)
	}
	return f, t, nil
}

func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) {
	rd, ok := s.authRead(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	node := q.Get("node")
	switch {
	case node == "" && !rd.operator:
		node = rd.node // a node reads its own usage
	case node != "" && !rd.mayRead(node):
		s.forbidden(w, r, rd, node)
		return
	}
	from, to, err := ParsePeriod(q.Get("from"), q.Get("to"))
	if err != nil {
		s.writeProblem(w, protocol.NewProblem(protocol.BadRequest, err.Error()))
		return
	}
	f := store.UsageFilter{Tenant: q.Get("tenant"), Node: node, From: from, To: to}
	rows, err := s.st.Usage(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, NewUsageReport(f, rows))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.st.Ping(r.Context()); err != nil {
		s.log.Error("health check failed", slog.Any("err", err))
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
