package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// The operator API (docs/billing.md): entities, tenant mappings, programs,
// vouchers, rate cards, statements and claims, on a listener of its own
// (config admin.listen), and the audit trail of refused batches and the
// review queue of held subsidies. Bodies and answers are JSON with money in
// integer fen and times in RFC 3339 (the authority/billing types):
//
//	GET  /v1/admin/entities                      {"entities": [...]}
//	PUT  /v1/admin/entities/{id}                 {"name", "related_providers"}
//	PUT  /v1/admin/tenants/{provider}/{tenant}   {"entity"}
//	GET  /v1/admin/programs                      {"programs": [...]}
//	POST /v1/admin/programs                      a billing.Program: 201
//	GET  /v1/admin/vouchers[?holder=ENTITY]      {"vouchers": [...]}
//	POST /v1/admin/vouchers                      {"id", "program", "holder", "face_fen", "issued", "expires"}: 201
//	POST /v1/admin/vouchers/{id}/status          {"status": "active"|"suspended"|"revoked"}
//	GET  /v1/admin/ratecards[?provider=P]        {"ratecards": [...]}
//	POST /v1/admin/ratecards                     a billing.RateCard: 201
//	POST /v1/admin/ratecards/{id}/end            {"at"}
//	GET  /v1/admin/statements/{entity}?from=&to=[&format=json|csv]
//	GET  /v1/admin/claims/{provider}?from=&to=[&format=json|csv]
//	GET  /v1/admin/coverage?from=&to=[&provider=&node=&gpu=&entity=][&format=json|csv]
//	GET  /v1/admin/refusals[?node=&unauthenticated=true&cause=&since=&until=&limit=]
//	                                             {"refusals": [...]}, newest first, without envelopes
//	GET  /v1/admin/refusals/{id}                 one refusal with its envelope (base64, the first 64 KiB)
//	GET  /v1/admin/reviews[?status=held|approved|rejected&provider=&entity=&node=&limit=]
//	                                             {"reviews": [...]}, oldest first
//	POST /v1/admin/reviews/{record}/approve      {"by", "note"}: the review as decided
//	POST /v1/admin/reviews/{record}/reject       {"by", "note" (required)}: the review as decided
//
// from, to, since and until are RFC 3339 or YYYY-MM-DD (midnight China
// Standard Time); limit is a whole number, 1 to 10000.
// Every request must carry the operators' bearer token; the token is
// compared in constant time and never logged, and each change is logged
// once at info level for the audit trail. Errors are RFC 9457 problems:
// billing-invalid (400: a value the rules refuse, the field named),
// billing-conflict (409: an id that exists, an overlapping rate card, a
// program or entity named in the body that does not exist, a revoked
// voucher's status, a review decided already), not-found (404: the
// voucher, rate card, entity, refusal or review of the path),
// bad-request (400: a body or query that does not parse), unauthorized
// (401).

// Problem causes of the operator API (type suffixes under protocol.TypeBase).
const (
	CauseUnauthorized    = protocol.Unauthorized
	CauseBillingInvalid  = protocol.BillingInvalid
	CauseBillingConflict = protocol.BillingConflict
)

// MinAdminTokenLen is the shortest operator token accepted: 32 characters
// (openssl rand -hex 32 makes 64).
const MinAdminTokenLen = 32

// maxAdminBody bounds an operator request body: a program or a rate card
// is well under a kilobyte.
const maxAdminBody = 1 << 20

// AdminOptions configure the operator API.
type AdminOptions struct {
	Store *store.Store
	// Token is the bearer token operators send (LoadAdminToken).
	Token  []byte
	Logger *slog.Logger // nil: discard
}

// Admin is the operator API's handler.
type Admin struct {
	st *store.Store
	// tokenSum is the token's SHA-256: comparing fixed-size digests keeps
	// the comparison's time independent of the presented token's length.
	tokenSum [sha256.Size]byte
	log      *slog.Logger
	mux      *http.ServeMux
}

// NewAdmin builds the operator API.
func NewAdmin(opts AdminOptions) (*Admin, error) {
	if opts.Store == nil {
		return nil, errors.New("new operator API: store is required")
	}
	if len(opts.Token) < MinAdminTokenLen {
		return nil, fmt.Errorf("new operator API: token has %d characters, want at least %d", len(opts.Token), MinAdminTokenLen)
	}
	a := &Admin{st: opts.Store, tokenSum: sha256.Sum256(opts.Token), log: opts.Logger, mux: http.NewServeMux()}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	m := a.mux
	m.HandleFunc("GET /v1/admin/entities", a.listEntities)
	m.HandleFunc("PUT /v1/admin/entities/{id}", a.putEntity)
	m.HandleFunc("PUT /v1/admin/tenants/{provider}/{tenant}", a.putTenant)
	m.HandleFunc("GET /v1/admin/programs", a.listPrograms)
	m.HandleFunc("POST /v1/admin/programs", a.addProgram)
	m.HandleFunc("GET /v1/admin/vouchers", a.listVouchers)
	m.HandleFunc("POST /v1/admin/vouchers", a.issueVoucher)
	m.HandleFunc("POST /v1/admin/vouchers/{id}/status", a.setVoucherStatus)
	m.HandleFunc("GET /v1/admin/ratecards", a.listRateCards)
	m.HandleFunc("POST /v1/admin/ratecards", a.addRateCard)
	m.HandleFunc("POST /v1/admin/ratecards/{id}/end", a.endRateCard)
	m.HandleFunc("GET /v1/admin/statements/{entity}", a.statement)
	m.HandleFunc("GET /v1/admin/claims/{provider}", a.claim)
	m.HandleFunc("GET /v1/admin/coverage", a.coverage)
	m.HandleFunc("GET /v1/admin/refusals", a.listRefusals)
	m.HandleFunc("GET /v1/admin/refusals/{id}", a.getRefusal)
	m.HandleFunc("GET /v1/admin/reviews", a.listReviews)
	m.HandleFunc("POST /v1/admin/reviews/{record}/approve", a.approveReview)
	m.HandleFunc("POST /v1/admin/reviews/{record}/reject", a.rejectReview)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.NotFound, fmt.Sprintf("no operator endpoint %s %s", r.Method, r.URL.Path)))
	})
	return a, nil
}

// Handler serves the operator API; nothing, not even a 404, is answered
// before the token is checked.
func (a *Admin) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			a.log.Warn("operator request refused: missing or wrong bearer token",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="voucher-authority operator API"`)
			protocol.WriteProblem(w, protocol.NewProblem(CauseUnauthorized, "send the operator token as Authorization: Bearer TOKEN"))
			return
		}
		// Every change the API makes is audited as the token's caller,
		// by address (the token is one for all operators).
		a.mux.ServeHTTP(w, r.WithContext(store.WithActor(r.Context(), AdminActor(r.RemoteAddr))))
	})
}

// AdminActor is how the audit trail of operator actions names a caller of
// the operator API: "admin-token@" and its address.
func AdminActor(remote string) string { return "admin-token@" + remote }

func (a *Admin) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

// fail answers a store error: the billing errors as their problems, with
// the store's message (it names the field or the object, never SQL);
// anything else as a logged 500.
func (a *Admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrInvalidBilling):
		protocol.WriteProblem(w, protocol.NewProblem(CauseBillingInvalid, err.Error()))
	case errors.Is(err, store.ErrBillingConflict):
		protocol.WriteProblem(w, protocol.NewProblem(CauseBillingConflict, err.Error()))
	case errors.Is(err, store.ErrBillingNotFound):
		protocol.WriteProblem(w, protocol.NewProblem(protocol.NotFound, err.Error()))
	default:
		a.log.Error("operator request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		protocol.WriteProblem(w, protocol.NewProblem(protocol.Internal, "the authority failed to process the request; retry later"))
	}
}

// changed logs an operator's change once, for the audit trail.
func (a *Admin) changed(r *http.Request, what string, attrs ...any) {
	a.log.Info("operator change: "+what, append([]any{slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr)}, attrs...)...)
}

// decode reads a JSON body strictly (unknown fields and trailing data are
// errors) into v; false means a problem was answered.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the JSON value")
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			protocol.WriteProblem(w, protocol.NewProblem(protocol.BodyTooLarge, fmt.Sprintf("body exceeds %d bytes", maxAdminBody)))
			return false
		}
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, "body: "+err.Error()))
		return false
	}
	return true
}

// answer writes v as JSON with status.
func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
