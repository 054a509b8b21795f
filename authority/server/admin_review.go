package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// The operator API's audit trail and review queue (admin.go lists the
// routes): refused batches as the store keeps them, and the held
// subsidies with their decisions (docs/billing.md, "Held subsidies").

// ReviewDecision is the body of POST /v1/admin/reviews/{record}/approve
// and /reject: who decides and why (required to reject).
type ReviewDecision struct {
	By   string `json:"by"`
	Note string `json:"note"`
}

// queryLimit reads ?limit=, a whole number from 1 to max ("" is 0: the
// store's default); false means a problem was answered.
func queryLimit(w http.ResponseWriter, r *http.Request, max int) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, fmt.Sprintf("limit %q: want a whole number from 1 to %d", s, max)))
		return 0, false
	}
	return n, true
}

// queryTime reads an optional time parameter (RFC 3339 or YYYY-MM-DD in
// China Standard Time); false means a problem was answered.
func queryTime(w http.ResponseWriter, r *http.Request, name string) (time.Time, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, true
	}
	t, err := ParseBillingTime(s)
	if err != nil {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, name+": "+err.Error()))
		return time.Time{}, false
	}
	return t, true
}

func (a *Admin) listRefusals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.RefusalFilter{Node: q.Get("node"), Cause: q.Get("cause")}
	switch u := q.Get("unauthenticated"); u {
	case "", "false":
	case "true":
		f.Unauthenticated = true
	default:
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, fmt.Sprintf("unauthenticated %q: want true or false", u)))
		return
	}
	if f.Unauthenticated && f.Node != "" {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, "node and unauthenticated=true exclude each other"))
		return
	}
	var ok bool
	if f.Since, ok = queryTime(w, r, "since"); !ok {
		return
	}
	if f.Until, ok = queryTime(w, r, "until"); !ok {
		return
	}
	if f.Limit, ok = queryLimit(w, r, store.MaxRefusalLimit); !ok {
		return
	}
	rs, err := a.st.ListRefusals(r.Context(), f)
	a.list(w, r, "refusals", nonNil(rs), err)
}

func (a *Admin) getRefusal(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, fmt.Sprintf("refusal id %q: want a whole number from 1", r.PathValue("id"))))
		return
	}
	ref, err := a.st.Refusal(r.Context(), id)
	if errors.Is(err, store.ErrRefusalNotFound) {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.NotFound, fmt.Sprintf("no refusal %d (it never existed, or the bound deleted it)", id)))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	answer(w, http.StatusOK, ref)
}

func (a *Admin) listReviews(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.ReviewFilter{Status: q.Get("status"), Provider: q.Get("provider"), Entity: q.Get("entity"), Node: q.Get("node")}
	var ok bool
	if f.Limit, ok = queryLimit(w, r, store.MaxReviewLimit); !ok {
		return
	}
	rs, err := a.st.ListReviews(r.Context(), f)
	a.list(w, r, "reviews", nonNil(rs), err)
}

func (a *Admin) approveReview(w http.ResponseWriter, r *http.Request) {
	a.decideReview(w, r, "approved", a.st.ApproveReview)
}

func (a *Admin) rejectReview(w http.ResponseWriter, r *http.Request) {
	a.decideReview(w, r, "rejected", a.st.RejectReview)
}

func (a *Admin) decideReview(w http.ResponseWriter, r *http.Request, verb string,
	decide func(ctx context.Context, recordID, by, note string, now time.Time) (store.Review, error)) {
	var b ReviewDecision
	if !decode(w, r, &b) {
		return
	}
	record := r.PathValue("record")
	rev, err := decide(r.Context(), record, b.By, b.Note, time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.changed(r, "review "+verb, "record", record, "by", b.By, "held_fen", int64(rev.Held), "note", b.Note)
	answer(w, http.StatusOK, rev)
}
