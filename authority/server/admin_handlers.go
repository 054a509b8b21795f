package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/protocol"
)

// The operator API's bodies. Money is integer fen and times are RFC 3339,
// as everywhere on the wire (docs/billing.md).

// EntityBody is PUT /v1/admin/entities/{id}'s body; id, when given, must
// be the path's.
type EntityBody = billing.Entity

// TenantBody is PUT /v1/admin/tenants/{provider}/{tenant}'s body.
type TenantBody struct {
	Entity string `json:"entity"`
}

// TenantMapping is its answer.
type TenantMapping struct {
	Provider string `json:"provider"`
	Tenant   string `json:"tenant"`
	Entity   string `json:"entity"`
}

// VoucherIssue is POST /v1/admin/vouchers's body: the balance is the face
// value and the status active, set by the authority.
type VoucherIssue struct {
	ID      string      `json:"id"`
	Program string      `json:"program"`
	Holder  string      `json:"holder"`
	Face    billing.Fen `json:"face_fen"`
	Issued  time.Time   `json:"issued"`
	Expires time.Time   `json:"expires"`
}

// VoucherStatus is POST /v1/admin/vouchers/{id}/status's body and answer.
type VoucherStatus struct {
	ID     string `json:"id,omitempty"`
	Status string `json:"status"`
}

// RateCardEnd is POST /v1/admin/ratecards/{id}/end's body and answer.
type RateCardEnd struct {
	ID string    `json:"id,omitempty"`
	At time.Time `json:"at"`
}

func (a *Admin) listEntities(w http.ResponseWriter, r *http.Request) {
	es, err := a.st.Entities(r.Context())
	a.list(w, r, "entities", nonNil(es), err)
}

func (a *Admin) putEntity(w http.ResponseWriter, r *http.Request) {
	var e EntityBody
	if !decode(w, r, &e) {
		return
	}
	id, ok := pathID(w, r, e.ID)
	if !ok {
		return
	}
	e.ID = id
	a.done(w, r, a.st.PutEntity(r.Context(), e), http.StatusOK, e,
		"entity put", "entity", id)
}

func (a *Admin) putTenant(w http.ResponseWriter, r *http.Request) {
	var b TenantBody
	if !decode(w, r, &b) {
		return
	}
	m := TenantMapping{Provider: r.PathValue("provider"), Tenant: r.PathValue("tenant"), Entity: b.Entity}
	a.done(w, r, a.st.MapTenant(r.Context(), m.Provider, m.Tenant, m.Entity), http.StatusOK, m,
		"tenant mapped", "provider", m.Provider, "tenant", m.Tenant, "entity", m.Entity)
}

func (a *Admin) listPrograms(w http.ResponseWriter, r *http.Request) {
	ps, err := a.st.Programs(r.Context())
	a.list(w, r, "programs", nonNil(ps), err)
}

func (a *Admin) addProgram(w http.ResponseWriter, r *http.Request) {
	var p billing.Program
	if !decode(w, r, &p) {
		return
	}
	a.done(w, r, a.st.AddProgram(r.Context(), p), http.StatusCreated, p,
		"program added", "program", p.ID)
}

func (a *Admin) listVouchers(w http.ResponseWriter, r *http.Request) {
	vs, err := a.st.Vouchers(r.Context(), r.URL.Query().Get("holder"))
	a.list(w, r, "vouchers", nonNil(vs), err)
}

func (a *Admin) issueVoucher(w http.ResponseWriter, r *http.Request) {
	var b VoucherIssue
	if !decode(w, r, &b) {
		return
	}
	v := billing.Voucher{ID: b.ID, Program: b.Program, Holder: b.Holder, Face: b.Face, Issued: b.Issued, Expires: b.Expires}
	if err := a.st.IssueVoucher(r.Context(), v); err != nil {
		a.fail(w, r, err)
		return
	}
	a.changed(r, "voucher issued", "voucher", v.ID, "holder", v.Holder, "face_fen", int64(v.Face))
	// Answer what the store holds (balance, status), not an echo.
	if vs, err := a.st.Vouchers(r.Context(), v.Holder); err == nil {
		for _, s := range vs {
			if s.ID == v.ID {
				v = s
			}
		}
	}
	answer(w, http.StatusCreated, v)
}

func (a *Admin) setVoucherStatus(w http.ResponseWriter, r *http.Request) {
	var b VoucherStatus
	if !decode(w, r, &b) {
		return
	}
	id, ok := pathID(w, r, b.ID)
	if !ok {
		return
	}
	a.done(w, r, a.st.SetVoucherStatus(r.Context(), id, b.Status), http.StatusOK, VoucherStatus{ID: id, Status: b.Status},
		"voucher status set", "voucher", id, "status", b.Status)
}

func (a *Admin) listRateCards(w http.ResponseWriter, r *http.Request) {
	cs, err := a.st.RateCards(r.Context(), r.URL.Query().Get("provider"))
	a.list(w, r, "ratecards", nonNil(cs), err)
}

func (a *Admin) addRateCard(w http.ResponseWriter, r *http.Request) {
	var c billing.RateCard
	if !decode(w, r, &c) {
		return
	}
	a.done(w, r, a.st.AddRateCard(r.Context(), c), http.StatusCreated, c,
		"rate card added", "rate_card", c.ID, "provider", c.Provider, "price_fen_per_hour", int64(c.PricePerHour))
}

func (a *Admin) endRateCard(w http.ResponseWriter, r *http.Request) {
	var b RateCardEnd
	if !decode(w, r, &b) {
		return
	}
	id, ok := pathID(w, r, b.ID)
	if !ok {
		return
	}
	if b.At.IsZero() {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, "body: at is required (RFC 3339)"))
		return
	}
	a.done(w, r, a.st.EndRateCard(r.Context(), id, b.At), http.StatusOK, RateCardEnd{ID: id, At: b.At},
		"rate card ended", "rate_card", id, "at", b.At)
}

// done answers v with code and logs the change (msg and attrs) when err,
// the store's answer, is nil; else it answers err's problem.
func (a *Admin) done(w http.ResponseWriter, r *http.Request, err error, code int, v any, msg string, attrs ...any) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.changed(r, msg, attrs...)
	answer(w, code, v)
}

// period reads ?from=&to=&format=; false means a problem was answered.
func period(w http.ResponseWriter, r *http.Request) (from, to time.Time, format string, ok bool) {
	q := r.URL.Query()
	from, to, err := ParseBillingPeriod(q.Get("from"), q.Get("to"))
	if err != nil {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, err.Error()))
		return from, to, "", false
	}
	format = q.Get("format")
	switch format {
	case "":
		format = "json"
	case "json", "csv":
	default:
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, fmt.Sprintf("format %q: want json or csv", format)))
		return from, to, "", false
	}
	return from, to, format, true
}

func (a *Admin) statement(w http.ResponseWriter, r *http.Request) {
	a.billingReport(w, r, "statement", "entity", func(ctx context.Context, entity string, from, to time.Time) ([]billing.Line, any, error) {
		st, err := a.st.Statement(ctx, entity, from, to)
		st.Lines = nonNil(st.Lines)
		return st.Lines, st, err
	})
}

func (a *Admin) claim(w http.ResponseWriter, r *http.Request) {
	a.billingReport(w, r, "claim", "provider", func(ctx context.Context, provider string, from, to time.Time) ([]billing.Line, any, error) {
		c, err := a.st.Claim(ctx, provider, from, to)
		c.Lines, c.ByVoucher = nonNil(c.Lines), nonNil(c.ByVoucher)
		return c.Lines, c, err
	})
}

// billingReport answers a statement or a claim for the request's period
// of the subject the path's {param} names: as JSON, or its lines as the
// CSV file kind-subject.csv. read reads it: its lines, and the answer.
func (a *Admin) billingReport(w http.ResponseWriter, r *http.Request, kind, param string,
	read func(ctx context.Context, subject string, from, to time.Time) ([]billing.Line, any, error)) {
	from, to, format, ok := period(w, r)
	if !ok {
		return
	}
	subject := r.PathValue(param)
	lines, report, err := read(r.Context(), subject, from, to)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if format == "csv" {
		writeCSV(w, fmt.Sprintf("%s-%s.csv", kind, subject), lines)
		return
	}
	answer(w, http.StatusOK, report)
}

// CSVContentType is the content type of statements and claims as CSV.
const CSVContentType = "text/csv; charset=utf-8"

// writeCSV answers lines as a CSV attachment (billing.WriteLinesCSV: one
// row per usage record; the totals are the JSON form's).
func writeCSV(w http.ResponseWriter, filename string, lines []billing.Line) {
	w.Header().Set("Content-Type", CSVContentType)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", filename))
	w.WriteHeader(http.StatusOK)
	// A write error here is the client gone: nothing left to tell it.
	_ = billing.WriteLinesCSV(w, lines)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// list answers a list as {"key": [...]}, or the store's error.
func (a *Admin) list(w http.ResponseWriter, r *http.Request, key string, items any, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	answer(w, http.StatusOK, map[string]any{key: items})
}

// pathID is the {id} of the path, refusing a body that names another id.
func pathID(w http.ResponseWriter, r *http.Request, bodyID string) (string, bool) {
	id := r.PathValue("id")
	if bodyID != "" && bodyID != id {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, fmt.Sprintf("body id %q is not the path's %q", bodyID, id)))
		return "", false
	}
	return id, true
}
