package server

import (
	"context"
	"errors"
	"fmt"

	"net/http"
	"strconv"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// The verifiable log's endpoints (docs/protocol.md, "The verifiable
// log"): checkpoints and proofs reveal nothing about usage and need no
// credential.

func (s *Server) logRoutes() {
	s.mux.HandleFunc("GET "+protocol.PathLogCheckpoint, s.getLogCheckpoint)
	s.mux.HandleFunc("GET "+protocol.PathLogKey, s.getLogKey)
	s.mux.HandleFunc("GET "+protocol.PathLogInclusion, s.getLogInclusion)
	s.mux.HandleFunc("GET "+protocol.PathLogConsistency, s.getLogConsistency)
}

// hasLog answers 404 when the authority keeps no log; false then.
func (s *Server) hasLog(w http.ResponseWriter) bool {
	if s.logKey == nil {
		s.writeProblem(w, protocol.NewProblem(protocol.NotFound, "this authority keeps no verifiable log"))
		return false
	}
	return true
}

func (s *Server) getLogCheckpoint(w http.ResponseWriter, r *http.Request) {
	if !s.hasLog(w) {
		return
	}
	_, note, err := s.st.LogCheckpoint(r.Context(), s.logKey)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeText(w, note)
}

func (s *Server) getLogKey(w http.ResponseWriter, _ *http.Request) {
	if !s.hasLog(w) {
		return
	}
	writeText(w, []byte(s.logKey.VerifierKey()+"\n"))
}

func (s *Server) getLogInclusion(w http.ResponseWriter, r *http.Request) {
	s.serveProof(w, r, "index", "size", s.st.InclusionProof)
}

func (s *Server) getLogConsistency(w http.ResponseWriter, r *http.Request) {
	s.serveProof(w, r, "from", "to", s.st.ConsistencyProof)
}

// serveProof answers a proof of the tree of size (query parameter
// sizeName) made by prove from it and the parameter argName, or 400 for
// a bad parameter or a size or index beyond the tree.
func (s *Server) serveProof(w http.ResponseWriter, r *http.Request, argName, sizeName string,
	prove func(ctx context.Context, arg, size uint64) ([][]byte, error)) {
	if !s.hasLog(w) {
		return
	}
	arg, ok := s.uintParam(w, r, argName)
	if !ok {
		return
	}
	size, ok := s.uintParam(w, r, sizeName)
	if !ok {
		return
	}
	hs, err := prove(r.Context(), arg, size)
	switch {
	case errors.Is(err, store.ErrLogRange):
		s.writeProblem(w, protocol.NewProblem(protocol.BadRequest, err.Error()))
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, protocol.LogProof{Size: size, Hashes: hs})
	}
}

// uintParam reads a required unsigned integer query parameter; false
// after answering 400.
func (s *Server) uintParam(w http.ResponseWriter, r *http.Request, name string) (uint64, bool) {
	v := r.URL.Query().Get(name)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		s.writeProblem(w, protocol.NewProblem(protocol.BadRequest,
			fmt.Sprintf("query parameter %s=%q: want a non-negative integer", name, v)))
		return 0, false
	}
	return n, true
}

// receipt is the log's part of an answer: the current checkpoint, the
// inclusion proof of leaf (when not nil) and the consistency proof from
// the size the agent sent in protocol.LogSizeHeader (when 0 < N <= size;
// a header that is not a number is ignored, as a larger size is: the agent
// then learns the current size). Nil when the authority keeps no log, or
// the batch has no leaf (stored before the log started).
func (s *Server) receipt(r *http.Request, leaf *uint64) (*protocol.LogReceipt, error) {
	if s.logKey == nil {
		return nil, nil
	}
	ctx := r.Context()
	size, note, err := s.st.LogCheckpoint(ctx, s.logKey)
	if errors.Is(err, store.ErrLogNotStarted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rc := &protocol.LogReceipt{Checkpoint: string(note)}
	if leaf != nil {
		if rc.Inclusion, err = s.st.InclusionProof(ctx, *leaf, size); err != nil {
			return nil, err
		}
		rc.LeafIndex = leaf
	}
	if from, err := strconv.ParseUint(r.Header.Get(protocol.LogSizeHeader), 10, 64); err == nil && from > 0 && from <= size {
		if rc.Consistency, err = s.st.ConsistencyProof(ctx, from, size); err != nil {
			return nil, err
		}
		rc.ConsistencyFrom = from
	}
	return rc, nil
}

func writeText(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b)
}
