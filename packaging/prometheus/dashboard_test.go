package prometheus

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

const dashboardFile = "../grafana/gpumeter-dashboard.json"

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	ID            *int    `json:"id"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *dsRef          `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *dsRef `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *dsRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	return decodeFile[dashboard](t, dashboardFile, json.Unmarshal)
}

// allPanels flattens rows, collapsed or not.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// exprs is every PromQL expression in the dashboard: each panel target's,
// and the series selector of each label_values() variable query. It fails
// t on a variable query it cannot read.
func (d dashboard) exprs(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct{ Query string }
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Fatalf("variable %s: query is neither a string nor {query}: %s", v.Name, v.Query)
			}
			q = obj.Query
		}
		m := labelValuesRE.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q)
		}
		out = append(out, m[1])
	}
	return out
}

// TestDashboard checks the dashboard's structure: Grafana's schema version,
// a Prometheus data source variable that every panel and target uses, the
// job and node variables applied to every selector, a layout that fits the
// 24-column grid without overlaps, and panels over what the issue asks for.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want about 39 (Grafana 10-11)", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both needed for a stable import", d.UID, d.Title)
	}
	if d.ID != nil {
		t.Errorf("id %d: an exported dashboard has id null, or the import overwrites another", *d.ID)
	}

	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" && string(v.Query) != `"prometheus"` {
			t.Errorf("variable %s: data source query %s, want \"prometheus\"", v.Name, v.Query)
		}
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query the ${datasource} variable", v.Name)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "instance": "query"} {
		if vars[name] != typ {
			t.Errorf("no %s variable %q", typ, name)
		}
	}

	ids := map[int]bool{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var rects []rect
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, r := range rects {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", p.Title, r.title)
			}
		}
		rects = append(rects, rect{p.Title, g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want the prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] {
				t.Errorf("panel %q: refId %q twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q query %s: empty expression", p.Title, tg.RefID)
			}
		}
	}

	// Every selector is narrowed to the chosen job and nodes, so the
	// variables mean what they say on every panel.
	used := map[string]bool{}
	hasGPUHours := false
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			sels, err := selectors(tg.Expr)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
				continue
			}
			if len(sels) == 0 {
				t.Errorf("panel %q: %q reads no metric", p.Title, tg.Expr)
			}
			for _, s := range sels {
				used[s.name] = true
				if !strings.Contains(s.matchers, `job=~"$job"`) || !strings.Contains(s.matchers, `instance=~"$instance"`) {
					t.Errorf("panel %q: %s{%s} is not narrowed by job=~\"$job\" and instance=~\"$instance\"", p.Title, s.name, s.matchers)
				}
			}
			if strings.Contains(tg.Expr, "increase(gpumeter_tenant_gpu_seconds_total") && strings.Contains(tg.Expr, "by (tenant)") &&
				strings.HasSuffix(strings.TrimSpace(tg.Expr), "/ 3600") {
				hasGPUHours = true
			}
		}
	}
	if !hasGPUHours {
		t.Error("no panel shows per-tenant GPU-hours (sum by (tenant) (increase(gpumeter_tenant_gpu_seconds_total[...])) / 3600)")
	}
	// What the dashboard must show: usage, utilization, energy, delivery
	// health, collector errors, reload status.
	for _, m := range []string{
		"gpumeter_tenant_gpu_seconds_total", "gpumeter_unit_seconds_total", "gpumeter_gpu_utilization_ratio",
		"gpumeter_gpu_up", "gpumeter_gpu_energy_joules_total", "gpumeter_spool_pending_records",
		"gpumeter_report_acked_sequence", "gpumeter_report_failed_attempts_total",
		"gpumeter_spool_dead_letter_batches", "gpumeter_report_blocked",
		"gpumeter_report_last_success_timestamp_seconds", "gpumeter_collector_errors_total",
		"gpumeter_config_last_reload_successful", "up",
	} {
		if !used[m] {
			t.Errorf("no panel reads %s", m)
		}
	}
}
