package console

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// A table is built whole by a page, then filtered (?ID.q=), sorted
// (?ID.sort=KEY&ID.dir=desc), paged (?ID.page=N, PerPage rows) and shown,
// or exported whole after filtering and sorting (?export=ID&format=csv or
// json), with each cell's raw value (fen, milliseconds, RFC 3339).

// PerPage is the rows shown per page.
const PerPage = 25

type column struct {
	Key, Label string
	Num        bool // sorts by cell.num
}

type cell struct {
	Text string // shown
	Raw  string // exported; "" means Text
	Link string
	num  int64
	// Form, when set, is a decision form in the cell (the review queue).
	Form *decisionForm
}

type decisionForm struct{ Approve, Reject, CSRF string }

type table struct {
	ID, Title string
	Cols      []column
	Rows      [][]cell
	// Lines, when set, is what CSV export writes instead (billing's line
	// format, the CLI's).
	Lines []billing.Line

	// Set by apply.
	Shown               [][]cell
	Query               string
	Sort                string
	Desc                bool
	Page, Pages, Total  int
	PrevURL, NextURL    string
	SortURLs            map[string]string
	CSVURL, JSONURL     string
	FilterKey, PagedKey string
	Hidden              []hidden // the other parameters, kept by the filter form
}

type hidden struct{ Name, Value string }

func txt(s string) cell { return cell{Text: s} }

func link(s, href string) cell { return cell{Text: s, Link: href} }

// linked is c linking to href.
func linked(c cell, href string) cell { c.Link = href; return c }

// statusCell shows a status word in lang and exports it as stored.
func statusCell(lang, status string) cell { return cell{Text: statusText(lang, status), Raw: status} }

func fenCell(f billing.Fen) cell {
	return cell{Text: yuan(f), Raw: strconv.FormatInt(int64(f), 10), num: int64(f)}
}

func msCell(ms int64) cell { return cell{Text: hours(ms), Raw: strconv.FormatInt(ms, 10), num: ms} }

func numCell(n int64) cell { return cell{Text: strconv.FormatInt(n, 10), num: n} }

func (c *Console) timeCell(t time.Time) cell {
	if t.IsZero() {
		return cell{}
	}
	return cell{Text: c.when(t), Raw: t.UTC().Format(time.RFC3339), num: t.UnixMilli()}
}

// apply filters, sorts and pages t for request r.
func (t *table) apply(r *http.Request) {
	q := r.URL.Query()
	t.Query = strings.TrimSpace(q.Get(t.ID + ".q"))
	rows := t.Rows
	if t.Query != "" {
		needle := strings.ToLower(t.Query)
		var kept [][]cell
		for _, row := range rows {
			for _, c := range row {
				if strings.Contains(strings.ToLower(c.Text), needle) {
					kept = append(kept, row)
					break
				}
			}
		}
		rows = kept
		t.Lines = nil // exported as shown
	}
	t.Sort, t.Desc = q.Get(t.ID+".sort"), q.Get(t.ID+".dir") == "desc"
	for i, col := range t.Cols {
		if col.Key != t.Sort {
			continue
		}
		rows = append([][]cell(nil), rows...)
		sort.SliceStable(rows, func(a, b int) bool {
			x, y := rows[a][i], rows[b][i]
			less := x.Text < y.Text
			if col.Num {
				less = x.num < y.num
			}
			if t.Desc {
				return !less && x.Text != y.Text
			}
			return less
		})
		t.Lines = nil // exported as shown
	}
	t.Total = len(rows)
	t.Pages = max(1, (len(rows)+PerPage-1)/PerPage)
	t.Page, _ = strconv.Atoi(q.Get(t.ID + ".page"))
	t.Page = min(max(t.Page, 1), t.Pages)
	lo := (t.Page - 1) * PerPage
	t.Shown = rows[lo:min(lo+PerPage, len(rows))]
	t.Rows = rows

	with := func(k, v string) string {
		u := *r.URL
		qq := u.Query()
		qq.Del("export")
		qq.Del("format")
		if v == "" {
			qq.Del(k)
		} else {
			qq.Set(k, v)
		}
		u.RawQuery = qq.Encode()
		return u.RequestURI()
	}
	if t.Page > 1 {
		t.PrevURL = with(t.ID+".page", strconv.Itoa(t.Page-1))
	}
	if t.Page < t.Pages {
		t.NextURL = with(t.ID+".page", strconv.Itoa(t.Page+1))
	}
	t.SortURLs = map[string]string{}
	for _, col := range t.Cols {
		dir := ""
		if col.Key == t.Sort && !t.Desc {
			dir = "desc"
		}
		u := *r.URL
		qq := u.Query()
		qq.Set(t.ID+".sort", col.Key)
		qq.Del(t.ID + ".page")
		if dir != "" {
			qq.Set(t.ID+".dir", dir)
		} else {
			qq.Del(t.ID + ".dir")
		}
		u.RawQuery = qq.Encode()
		t.SortURLs[col.Key] = u.RequestURI()
	}
	t.CSVURL = exportURL(r.URL, t.ID, "csv")
	t.JSONURL = exportURL(r.URL, t.ID, "json")
	t.FilterKey = t.ID + ".q"
	for k, vs := range q {
		if k == t.FilterKey || k == t.ID+".page" || k == "export" || k == "format" {
			continue
		}
		for _, v := range vs {
			t.Hidden = append(t.Hidden, hidden{k, v})
		}
	}
	sort.Slice(t.Hidden, func(a, b int) bool { return t.Hidden[a].Name < t.Hidden[b].Name })
}

func exportURL(u *url.URL, id, format string) string {
	c := *u
	q := c.Query()
	q.Set("export", id)
	q.Set("format", format)
	c.RawQuery = q.Encode()
	return c.RequestURI()
}

// export writes t (filtered and sorted: apply first) as CSV or JSON.
func (t *table) export(w http.ResponseWriter, format string) {
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+t.ID+`.csv"`)
		if t.Lines != nil {
			_ = billing.WriteLinesCSV(w, t.Lines)
			return
		}
		cw := csv.NewWriter(w)
		head := make([]string, len(t.Cols))
		for i, c := range t.Cols {
			head[i] = c.Key
		}
		_ = cw.Write(head)
		for _, row := range t.Rows {
			out := make([]string, len(row))
			for i, c := range row {
				out[i] = csvSafe(c.raw())
			}
			_ = cw.Write(out)
		}
		cw.Flush()
	case "json":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="`+t.ID+`.json"`)
		out := make([]map[string]string, 0, len(t.Rows))
		for _, row := range t.Rows {
			m := make(map[string]string, len(row))
			for i, c := range row {
				m[t.Cols[i].Key] = c.raw()
			}
			out = append(out, m)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"table": t.ID, "rows": out})
	default:
		http.Error(w, "format must be csv or json", http.StatusBadRequest)
	}
}

func (c cell) raw() string {
	if c.Raw != "" {
		return c.Raw
	}
	return c.Text
}

// csvSafe keeps a spreadsheet from running a name as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return "'" + s
		}
	}
	return s
}
