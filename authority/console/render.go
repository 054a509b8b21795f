package console

import (
	"bytes"
	"log/slog"
	"net/http"
	"strconv"
)

// page is what a template shows. Title and the labels are message keys.
type page struct {
	Title   string
	Sub     string // shown as is (an id)
	V       viewer
	Nav     []nav
	Error   string // a message key
	Notice  string // a message key
	Path    string // the request URI, to come back to after a language switch
	Period  *period
	Figures []figure
	Charts  []*chart
	Tables  []*table
}

type nav struct{ Key, Href string }

type period struct {
	Action   string
	From, To string // YYYY-MM-DD
	Extra    []hidden
}

type figure struct{ Label, Value, Link string }

// chart is a bar chart the template draws as inline SVG.
type chart struct {
	Title      string
	W, H       int
	Bars       []bar
	Max        string
	Axis, Base int
}

type bar struct {
	X, Y, W, H    int
	Label, Value  string
	Axis          string // the label under the bar, or "" to keep the axis legible
	Link          string
	LabelX, TextY int
}

// barChart lays out values as bars, each linking to href(i).
func barChart(title string, labels []string, values []int64, show func(int64) string, href func(int) string) *chart {
	const w, h, top, bottom = 720, 220, 20, 40
	ch := &chart{Title: title, W: w, H: h, Base: h - bottom, Axis: top}
	var maxV int64
	for _, v := range values {
		maxV = max(maxV, v)
	}
	if len(values) == 0 || maxV == 0 {
		return ch
	}
	ch.Max = show(maxV)
	slot := (w - 40) / len(values)
	bw := max(2, slot*4/5)
	every := max(1, (len(values)+14)/15) // at most 15 axis labels
	for i, v := range values {
		bh := int(v * int64(h-top-bottom) / maxV)
		x := 40 + i*slot
		b := bar{X: x, Y: h - bottom - bh, W: bw, H: bh, Label: labels[i], Value: show(v), Link: href(i), LabelX: x + bw/2, TextY: h - bottom + 14}
		if i%every == 0 {
			b.Axis = labels[i]
		}
		ch.Bars = append(ch.Bars, b)
	}
	return ch
}

func (c *Console) navFor(v viewer) []nav {
	switch v.Role {
	case "provider":
		return []nav{{"overview", Prefix}, {"providers", Prefix + "providers/" + v.Scope}, {"claims", Prefix + "claims?provider=" + v.Scope}}
	case "entity":
		return []nav{{"overview", Prefix}, {"vouchers", Prefix + "entities/" + v.Scope}, {"statement", Prefix + "statement?entity=" + v.Scope}}
	}
	return []nav{{"overview", Prefix}, {"programs", Prefix + "programs"}, {"entities", Prefix + "entities"},
		{"providers", Prefix + "providers"}, {"claims", Prefix + "claims"}, {"reviews", Prefix + "reviews"}, {"audit", Prefix + "audit"}}
}

// render answers a table's export when the request asks for one, else
// executes the template into a buffer first, so that a failing template
// answers a clean 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	for _, t := range p.Tables {
		t.apply(r)
	}
	if id := r.URL.Query().Get("export"); id != "" {
		for _, t := range p.Tables {
			if t.ID == id {
				t.export(w, r.URL.Query().Get("format"))
				return
			}
		}
		http.Error(w, "no table "+strconv.Quote(id)+" on this page", http.StatusNotFound)
		return
	}
	if p.V.Role != "" {
		p.Nav = c.navFor(p.V)
	}
	p.Path = r.URL.RequestURI()
	var buf bytes.Buffer
	if err := c.tmpl[p.V.Lang].ExecuteTemplate(&buf, name, p); err != nil {
		c.log.Error("console: render", slog.String("template", name), slog.Any("err", err))
		http.Error(w, "the console failed to answer; retry later", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// forbidden answers a page the viewer may not see.
func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, v viewer) {
	c.log.Warn("console: refused a page outside the sign-in's scope", slog.String("path", r.URL.Path),
		slog.String("role", v.Role), slog.String("scope", v.Scope), slog.String("remote", r.RemoteAddr))
	http.Error(w, "not visible to this sign-in", http.StatusForbidden)
}
