package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// Reads of usage data (GET /v1/nodes/{id}/head, GET /v1/usage) are
// authenticated one of two ways:
//
//   - the operators' bearer token (Options.OperatorToken, the operator
//     API's), which reads every node's data;
//   - a signed read (protocol.ReadScheme) by a registered key that is not
//     revoked at the authority's now, over the method, the request URI as
//     sent and a timestamp within protocol.ReadSkew of the authority's
//     clock. It reads its key's node's data only: another node's is 403
//     node-mismatch, and GET /v1/usage without node= reads the key's node.
//
// Anything else, no credentials included, is 401 unauthorized with a
// WWW-Authenticate challenge naming the schemes accepted. The reason is in
// the detail and the log (never the token); the signature
// is checked before the key's revocation and the timestamp, so that only
// the key's holder learns those.

// reader is whom a read was authenticated as.
type reader struct {
	operator bool   // the operators' token: every node
	node     string // a signed read: this node only
	keyID    string
}

// mayRead reports whether the reader may read node's data.
func (rd reader) mayRead(node string) bool { return rd.operator || rd.node == node }

// authRead authenticates a read; false means a problem was answered.
func (s *Server) authRead(w http.ResponseWriter, r *http.Request) (reader, bool) {
	h := r.Header.Get("Authorization")
	scheme, _, _ := strings.Cut(h, " ")
	var (
		rd  reader
		why string
		err error
	)
	switch {
	case h == "":
		why = "no credentials"
	case strings.EqualFold(scheme, "Bearer"):
		if s.operatorToken(h) {
			rd.operator = true
		} else {
			why = "wrong bearer token"
		}
	case scheme == protocol.ReadScheme:
		rd, why, err = s.signedRead(r, h)
		if err != nil {
			s.internal(w, r, err)
			return reader{}, false
		}
	default:
		why = fmt.Sprintf("authorization scheme %q is not accepted", scheme)
	}
	if why != "" {
		s.log.Warn("read refused", slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr), slog.String("reason", why))
		w.Header().Add("WWW-Authenticate", protocol.ReadScheme+` realm="gpumeter"`)
		if s.tokenSum != nil {
			w.Header().Add("WWW-Authenticate", `Bearer realm="gpumeter"`)
		}
		s.writeProblem(w, protocol.NewProblem(protocol.Unauthorized,
			why+": sign the read with the node's key ("+protocol.ReadScheme+"), or send the operators' bearer token"))
		return reader{}, false
	}
	return rd, true
}

// operatorToken reports whether a Bearer header carries the operators'
// token, compared as the operator API does (digests, constant time).
func (s *Server) operatorToken(h string) bool {
	if s.tokenSum == nil {
		return false
	}
	_, token, _ := strings.Cut(h, " ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// signedRead checks a signed read's header h; why is the refusal ("" when
// it holds), err a failure to look the key up.
func (s *Server) signedRead(r *http.Request, h string) (rd reader, why string, err error) {
	a, err := protocol.ParseReadAuth(h)
	if err != nil {
		return reader{}, err.Error(), nil
	}
	k, err := s.st.Key(r.Context(), a.KeyID)
	switch {
	case errors.Is(err, store.ErrKeyNotFound):
		return reader{}, fmt.Sprintf("key %s is not registered", a.KeyID), nil
	case err != nil:
		return reader{}, "", err
	}
	if !a.Verify(k.Public, r.Method, r.URL.RequestURI()) {
		return reader{}, fmt.Sprintf("signature of key %s does not verify over %s %s", a.KeyID, r.Method, r.URL.RequestURI()), nil
	}
	now := s.clock.Now()
	if k.RevokedAsOf(now) {
		return reader{}, fmt.Sprintf("key %s is revoked", a.KeyID), nil
	}
	if d := now.Sub(a.Time); d > protocol.ReadSkew || d < -protocol.ReadSkew {
		return reader{}, fmt.Sprintf("ts %s is more than %s from the authority's clock", a.TS, protocol.ReadSkew), nil
	}
	return reader{node: k.Node, keyID: k.ID}, "", nil
}

// forbidden answers a signed read of another node's data.
func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, rd reader, node string) {
	s.log.Warn("read refused: another node's data", slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr),
		slog.String("key_id", rd.keyID), slog.String("key_node", rd.node), slog.String("node", node))
	s.writeProblem(w, protocol.NewProblem(protocol.NodeMismatch,
		fmt.Sprintf("key %s is node %q's: it reads that node's data only", rd.keyID, rd.node)))
}
