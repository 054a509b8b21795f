// Package console is the voucher authority's web console (docs/console.md):
// server-rendered pages for program officers (the operators' token), a
// provider's staff and an entity (scoped console tokens), in Simplified
// Chinese and English. Templates and the style sheet are embedded; charts
// are inline SVG rendered by the templates; no page needs JavaScript.
//
// Every request is authenticated by a session cookie (auth.go); what a
// session may see is decided in one place, scope.go; every page builds
// tables (table.go) that page, sort, filter and export CSV and JSON alike.
package console

import (
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
	_ "time/tzdata" // Asia/Shanghai on hosts without a zoneinfo database

	"github.com/gpumeter/gpumeter/authority/store"
)

//go:embed templates/*.html assets/*
var files embed.FS

// Prefix is where the console is mounted.
const Prefix = "/console/"

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 12 * time.Hour

// Options configure the console.
type Options struct {
	Store *store.Store
	// OperatorToken is the operators' token (the operator API's): it signs
	// in a program officer.
	OperatorToken []byte
	Logger        *slog.Logger // nil: discard
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Location is the time zone dates are shown in; nil: Asia/Shanghai.
	Location *time.Location
}

// Console serves the pages.
type Console struct {
	st       *store.Store
	tokenSum [sha256.Size]byte
	log      *slog.Logger
	now      func() time.Time
	loc      *time.Location
	tmpl     map[string]*template.Template // by language
	mux      *http.ServeMux
}

// New builds the console.
func New(opts Options) (*Console, error) {
	if opts.Store == nil {
		return nil, errors.New("new console: store is required")
	}
	if len(opts.OperatorToken) < 32 {
		return nil, fmt.Errorf("new console: operator token has %d characters, want at least 32", len(opts.OperatorToken))
	}
	c := &Console{st: opts.Store, tokenSum: sha256.Sum256(opts.OperatorToken), log: opts.Logger, now: opts.Now, loc: opts.Location}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.loc == nil {
		loc, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			return nil, fmt.Errorf("new console: %w", err)
		}
		c.loc = loc
	}
	c.tmpl = map[string]*template.Template{}
	for _, lang := range languages {
		t, err := template.New("").Funcs(c.funcs(lang)).ParseFS(files, "templates/*.html")
		if err != nil {
			return nil, fmt.Errorf("new console: templates: %w", err)
		}
		c.tmpl[lang] = t
	}
	assets, _ := fs.Sub(files, "assets")
	m := http.NewServeMux()
	m.Handle("GET /console/assets/", http.StripPrefix("/console/assets/", http.FileServerFS(assets)))
	m.HandleFunc("GET /console/signin", c.signinForm)
	m.HandleFunc("POST /console/signin", c.signin)
	m.HandleFunc("GET /console/lang", c.setLang)
	m.HandleFunc("POST /console/signout", c.authed(c.signout))
	m.HandleFunc("GET /console/{$}", c.authed(c.overview))
	m.HandleFunc("GET /console/programs", c.authed(c.operatorOnly(c.programs)))
	m.HandleFunc("GET /console/entities", c.authed(c.entities))
	m.HandleFunc("GET /console/entities/{id}", c.authed(c.entity))
	m.HandleFunc("GET /console/vouchers/{id}", c.authed(c.voucher))
	m.HandleFunc("GET /console/providers", c.authed(c.providers))
	m.HandleFunc("GET /console/providers/{id}", c.authed(c.provider))
	m.HandleFunc("GET /console/nodes/{id}", c.authed(c.node))
	m.HandleFunc("GET /console/records/{id}", c.authed(c.record))
	m.HandleFunc("GET /console/claims", c.authed(c.claims))
	m.HandleFunc("GET /console/statement", c.authed(c.statement))
	m.HandleFunc("GET /console/reviews", c.authed(c.operatorOnly(c.reviews)))
	m.HandleFunc("POST /console/reviews/{record}/{decision}", c.authed(c.operatorOnly(c.decide)))
	m.HandleFunc("GET /console/audit", c.authed(c.operatorOnly(c.audit)))
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	c.mux = m
	return c, nil
}

// Handler serves the console under Prefix, with the security headers on
// every answer.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		c.mux.ServeHTTP(w, r)
	})
}
