package console

import (
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

// periodOf reads ?from=&to= (YYYY-MM-DD or RFC 3339); absent, the 30 days
// up to tomorrow's midnight in the console's zone.
func (c *Console) periodOf(r *http.Request, action string, extra ...hidden) (time.Time, time.Time, *period, error) {
	q := r.URL.Query()
	from, to := q.Get("from"), q.Get("to")
	if from == "" && to == "" {
		n := c.now().In(c.loc)
		end := time.Date(n.Year(), n.Month(), n.Day()+1, 0, 0, 0, 0, c.loc)
		f, t := end.AddDate(0, 0, -30), end
		return f, t, &period{Action: action, From: c.date(f), To: c.date(t), Extra: extra}, nil
	}
	f, t, err := server.ParseBillingPeriod(from, to)
	return f, t, &period{Action: action, From: from, To: to, Extra: extra}, err
}

func periodQuery(from, to time.Time, loc *time.Location) string {
	return "from=" + from.In(loc).Format(time.DateOnly) + "&to=" + to.In(loc).Format(time.DateOnly)
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, v viewer) {
	ctx := r.Context()
	from, to, per, err := c.periodOf(r, Prefix)
	if err != nil {
		http.Error(w, "period: "+err.Error(), http.StatusBadRequest)
		return
	}
	p := &page{Title: "overview", V: v, Period: per}
	if v.operator() {
		budgets, err := c.st.ProgramBudgets(ctx)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		t := &table{ID: "budgets", Title: "budgets", Cols: []column{{"program", "program", false}, {"name", "name", false},
			{"vouchers", "vouchers", true}, {"committed_fen", "committed", true}, {"balance_fen", "balance", true},
			{"paid_fen", "paid", true}, {"held_fen", "held", true}}}
		for _, b := range budgets {
			t.Rows = append(t.Rows, []cell{link(b.Program, Prefix+"programs?programs.q="+url.QueryEscape(b.Program)), txt(b.Name),
				linked(numCell(b.Vouchers), Prefix+"entities"), linked(fenCell(b.Committed), Prefix+"entities"),
				linked(fenCell(b.Balance), Prefix+"entities"), linked(fenCell(b.Paid), Prefix+"entities"),
				{Text: yuan(b.Held), Raw: strconv.FormatInt(int64(b.Held), 10), num: int64(b.Held), Link: Prefix + "reviews"}})
		}
		p.Tables = append(p.Tables, t)
	}
	days, err := c.st.UsageByDay(ctx, v.storeScope(), from, to)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var (
		dayIdx   = map[int64]int{}
		labels   []string
		values   []int64
		starts   []time.Time
		byProv   = map[string]int64{}
		byModel  = map[string]int64{}
		totalGPU int64
	)
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		dayIdx[d.UnixMilli()] = len(values)
		labels, values, starts = append(labels, d.In(c.loc).Format("01-02")), append(values, 0), append(starts, d)
	}
	for _, u := range days {
		if i, ok := dayIdx[u.Day.UnixMilli()]; ok {
			values[i] += u.GPUMs
		}
		byProv[u.Provider] += u.GPUMs
		byModel[u.Model] += u.GPUMs
		totalGPU += u.GPUMs
	}
	p.Figures = append(p.Figures, figure{Label: "gpu hours", Value: hours(totalGPU), Link: c.downLink(v, from, to)})
	p.Charts = append(p.Charts, barChart("gpu hours day", labels, values, hours, func(i int) string {
		return c.downLink(v, starts[i], starts[i].AddDate(0, 0, 1))
	}))
	pt := &table{ID: "providers", Title: "gpu hours prov", Cols: []column{{"provider", "provider", false}, {"gpu_ms", "gpu hours", true}}}
	for prov, ms := range byProv {
		pt.Rows = append(pt.Rows, []cell{link(prov, Prefix+"claims?provider="+url.QueryEscape(prov)+"&"+periodQuery(from, to, c.loc)), msCell(ms)})
	}
	mt := &table{ID: "models", Title: "gpu hours model", Cols: []column{{"model", "model", false}, {"gpu_ms", "gpu hours", true}}}
	for m, ms := range byModel {
		mt.Rows = append(mt.Rows, []cell{link(m, c.downLink(v, from, to)), msCell(ms)})
	}
	sortRows(pt.Rows)
	sortRows(mt.Rows)
	p.Tables = append(p.Tables, pt, mt)
	if v.Role != store.RoleProvider {
		vs, err := c.st.Vouchers(ctx, v.storeScope().Entity)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		soon := c.now().AddDate(0, 0, 30)
		et := c.voucherTable("expiring", "expiring")
		for _, vo := range vs {
			if vo.Status == billing.VoucherActive && vo.Expires.After(c.now()) && vo.Expires.Before(soon) {
				et.Rows = append(et.Rows, c.voucherRow(vo, v.Lang))
			}
		}
		p.Tables = append(p.Tables, et)
	}
	c.render(w, r, http.StatusOK, "page", p)
}

// downLink is where a figure of [from, to) leads: the records behind it.
func (c *Console) downLink(v viewer, from, to time.Time) string {
	q := periodQuery(from, to, c.loc)
	switch v.Role {
	case store.RoleProvider:
		return Prefix + "claims?provider=" + url.QueryEscape(v.Scope) + "&" + q
	case store.RoleEntity:
		return Prefix + "statement?entity=" + url.QueryEscape(v.Scope) + "&" + q
	}
	return Prefix + "claims?" + q
}

func sortRows(rows [][]cell) {
	sort.Slice(rows, func(a, b int) bool { return rows[a][0].Text < rows[b][0].Text })
}

func (c *Console) programs(w http.ResponseWriter, r *http.Request, v viewer) {
	ps, err := c.st.Programs(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	t := &table{ID: "programs", Title: "programs", Cols: []column{{"id", "program", false}, {"issuer", "issuer", false},
		{"name", "name", false}, {"ratio_bp", "ratio", true}, {"cap_per_entity_year_fen", "cap year", true},
		{"valid_from", "valid from", true}, {"valid_to", "valid to", true}}}
	for _, pr := range ps {
		t.Rows = append(t.Rows, []cell{txt(pr.ID), txt(pr.Issuer), txt(pr.Name),
			{Text: strconv.FormatInt(int64(pr.Ratio)/100, 10) + "%", Raw: strconv.FormatInt(int64(pr.Ratio), 10), num: int64(pr.Ratio)},
			fenCell(pr.CapPerYear), c.timeCell(pr.ValidFrom), c.timeCell(pr.ValidTo)})
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "programs", V: v, Tables: []*table{t}})
}

func (c *Console) entities(w http.ResponseWriter, r *http.Request, v viewer) {
	if v.Role == store.RoleEntity {
		http.Redirect(w, r, Prefix+"entities/"+url.PathEscape(v.Scope), http.StatusSeeOther)
		return
	}
	if c.may(r.Context(), v, kindOperatorOnly, "") != nil {
		c.forbidden(w, r, v)
		return
	}
	es, err := c.st.Entities(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	vs, err := c.st.Vouchers(r.Context(), "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	bal, n := map[string]billing.Fen{}, map[string]int64{}
	for _, vo := range vs {
		bal[vo.Holder] += vo.Balance
		n[vo.Holder]++
	}
	t := &table{ID: "entities", Title: "entities", Cols: []column{{"id", "entity", false}, {"name", "name", false},
		{"vouchers", "vouchers", true}, {"balance_fen", "balance", true}}}
	for _, e := range es {
		t.Rows = append(t.Rows, []cell{link(e.ID, Prefix+"entities/"+url.PathEscape(e.ID)), txt(e.Name), numCell(n[e.ID]), fenCell(bal[e.ID])})
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "entities", V: v, Tables: []*table{t}})
}

func (c *Console) voucherTable(id, title string) *table {
	return &table{ID: id, Title: title, Cols: []column{{"id", "voucher", false}, {"program", "program", false},
		{"holder", "entity", false}, {"face_fen", "face", true}, {"balance_fen", "balance", true},
		{"issued", "issued", true}, {"expires", "expires", true}, {"status", "status", false}}}
}

func (c *Console) voucherRow(vo billing.Voucher, lang string) []cell {
	status := vo.Status
	if status == billing.VoucherActive && !vo.Expires.After(c.now()) {
		status = "expired"
	}
	history := Prefix + "vouchers/" + url.PathEscape(vo.ID) + "#t-history"
	bal := fenCell(vo.Balance)
	bal.Link = history
	return []cell{link(vo.ID, Prefix+"vouchers/"+url.PathEscape(vo.ID)), txt(vo.Program),
		link(vo.Holder, Prefix+"entities/"+url.PathEscape(vo.Holder)), fenCell(vo.Face), bal,
		c.timeCell(vo.Issued), c.timeCell(vo.Expires), statusCell(lang, status)}
}

func (c *Console) entity(w http.ResponseWriter, r *http.Request, v viewer) {
	id, ok := c.pathVisible(w, r, v, kindEntity)
	if !ok {
		return
	}
	vs, err := c.st.Vouchers(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	t := c.voucherTable("vouchers", "vouchers")
	var bal billing.Fen
	for _, vo := range vs {
		t.Rows = append(t.Rows, c.voucherRow(vo, v.Lang))
		bal += vo.Balance
	}
	p := &page{Title: "entity", Sub: id, V: v, Tables: []*table{t},
		Figures: []figure{{Label: "balance", Value: yuan(bal), Link: "#t-vouchers"}, {Label: "statement", Value: "→", Link: Prefix + "statement?entity=" + url.QueryEscape(id)}}}
	c.render(w, r, http.StatusOK, "page", p)
}

func (c *Console) voucher(w http.ResponseWriter, r *http.Request, v viewer) {
	id, ok := c.pathVisible(w, r, v, kindVoucher)
	if !ok {
		return
	}
	gs, err := c.st.VoucherGrants(r.Context(), id, 10_000)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	t := &table{ID: "history", Title: "history", Cols: []column{{"record_id", "record", false}, {"provider", "provider", false},
		{"tenant", "tenant", false}, {"window_start", "window start", true}, {"amount_fen", "amount", true}, {"review", "review", false}}}
	var sum billing.Fen
	for _, g := range gs {
		t.Rows = append(t.Rows, []cell{recordLink(g.RecordID), txt(g.Provider), txt(g.Tenant), c.timeCell(g.WindowStart), fenCell(g.Amount), statusCell(v.Lang, g.Review)})
		sum += g.Amount
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "voucher", Sub: id, V: v, Tables: []*table{t},
		Figures: []figure{{Label: "paid", Value: yuan(sum), Link: "#t-history"}}})
}

func (c *Console) providers(w http.ResponseWriter, r *http.Request, v viewer) {
	if v.Role == store.RoleProvider {
		http.Redirect(w, r, Prefix+"providers/"+url.PathEscape(v.Scope), http.StatusSeeOther)
		return
	}
	if c.may(r.Context(), v, kindOperatorOnly, "") != nil {
		c.forbidden(w, r, v)
		return
	}
	ns, err := c.st.Nodes(r.Context(), c.now())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	type agg struct{ nodes, gpus, forked int64 }
	by := map[string]*agg{}
	for _, n := range ns {
		a := by[n.Provider]
		if a == nil {
			a = &agg{}
			by[n.Provider] = a
		}
		a.nodes++
		a.gpus += int64(len(n.GPUs))
		if n.Forked {
			a.forked++
		}
	}
	t := &table{ID: "providers", Title: "providers", Cols: []column{{"provider", "provider", false}, {"nodes", "nodes", true},
		{"gpus", "gpus", true}, {"forked", "forked", true}}}
	for prov, a := range by {
		t.Rows = append(t.Rows, []cell{link(prov, Prefix+"providers/"+url.PathEscape(prov)), numCell(a.nodes), numCell(a.gpus), numCell(a.forked)})
	}
	sortRows(t.Rows)
	c.render(w, r, http.StatusOK, "page", &page{Title: "providers", V: v, Tables: []*table{t}})
}

func (c *Console) provider(w http.ResponseWriter, r *http.Request, v viewer) {
	prov := r.PathValue("id")
	ctx := r.Context()
	if c.may(ctx, v, kindProvider, prov) != nil {
		c.forbidden(w, r, v)
		return
	}
	ns, err := c.st.Nodes(ctx, c.now())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	now := c.now()
	cov, err := c.st.Coverage(ctx, store.CoverageFilter{Provider: prov, From: now.AddDate(0, 0, -7), To: now, Now: now})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	exp, got := map[string]int64{}, map[string]int64{}
	for _, g := range cov {
		exp[g.Node] += g.ExpectedMillis
		got[g.Node] += g.CoveredMillis
	}
	t := &table{ID: "nodes", Title: "nodes", Cols: []column{{"node", "node", false}, {"gpus", "gpus", true}, {"models", "models", false},
		{"last_report", "last report", true}, {"coverage_pct", "coverage", true}, {"forked", "forked", false}, {"refusals", "refusals", true}}}
	for _, n := range ns {
		if n.Provider != prov {
			continue
		}
		models := map[string]bool{}
		for _, g := range n.GPUs {
			models[g.Model] = true
		}
		ms := make([]string, 0, len(models))
		for m := range models {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		refused := int64(0)
		for _, in := range n.Instances {
			refused += in.Refused
		}
		pct := int64(0)
		if exp[n.ID] > 0 {
			pct = got[n.ID] * 100 / exp[n.ID]
		}
		forked := text(v.Lang, "no")
		if n.Forked {
			forked = text(v.Lang, "yes")
		}
		t.Rows = append(t.Rows, []cell{link(n.ID, Prefix+"nodes/"+url.PathEscape(n.ID)), numCell(int64(len(n.GPUs))),
			txt(strings.Join(ms, ", ")), c.timeCell(n.LastWindowEnd), {Text: strconv.FormatInt(pct, 10) + "%", num: pct},
			txt(forked), linked(numCell(refused), Prefix+"nodes/"+url.PathEscape(n.ID)+"#t-refusals")})
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "provider", Sub: prov, V: v, Tables: []*table{t},
		Figures: []figure{{Label: "claims", Value: "→", Link: Prefix + "claims?provider=" + url.QueryEscape(prov)}}})
}

func (c *Console) node(w http.ResponseWriter, r *http.Request, v viewer) {
	id := r.PathValue("id")
	ctx := r.Context()
	if c.may(ctx, v, kindNode, id) != nil {
		c.forbidden(w, r, v)
		return
	}
	n, err := c.st.Node(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	gt := &table{ID: "gpus", Title: "gpus", Cols: []column{{"gpu_uuid", "gpus", false}, {"model", "model", false},
		{"registered", "registered", true}, {"retired", "retired", true}}}
	for _, g := range n.GPUs {
		gt.Rows = append(gt.Rows, []cell{txt(g.UUID), txt(g.Model), c.timeCell(g.Registered), c.timeCell(g.Retired)})
	}
	refs, err := c.st.ListRefusals(ctx, store.RefusalFilter{Node: id, Limit: 1000})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rt := &table{ID: "refusals", Title: "refusals", Cols: []column{{"received", "received", true}, {"cause", "cause", false}, {"detail", "detail", false}}}
	for _, f := range refs {
		rt.Rows = append(rt.Rows, []cell{c.timeCell(f.Received), txt(f.Cause), txt(f.Detail)})
	}
	forked := text(v.Lang, "no")
	if n.Forked {
		forked = text(v.Lang, "yes")
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "node", Sub: id, V: v, Tables: []*table{gt, rt},
		Figures: []figure{{Label: "provider", Value: n.Provider, Link: Prefix + "providers/" + url.PathEscape(n.Provider)},
			{Label: "last report", Value: c.when(n.LastWindowEnd), Link: Prefix + "claims?provider=" + url.QueryEscape(n.Provider) + "&lines.q=" + url.QueryEscape(id)},
			{Label: "forked", Value: forked}}})
}

// linesTable shows billing lines; its CSV export is billing's (the CLI's).
func (c *Console) linesTable(lines []billing.Line, lang string) *table {
	t := &table{ID: "lines", Title: "lines", Lines: lines, Cols: []column{{"record_id", "record", false}, {"node", "node", false},
		{"tenant", "tenant", false}, {"entity", "entity", false}, {"model", "model", false}, {"window_start", "window start", true},
		{"gpu_ms", "gpu hours", true}, {"cost_fen", "cost", true}, {"subsidy_fen", "subsidy", true}, {"held_subsidy_fen", "held", true},
		{"payable_fen", "payable", true}, {"review", "review", false}}}
	if lines == nil {
		t.Lines = []billing.Line{}
	}
	for _, l := range lines {
		t.Rows = append(t.Rows, []cell{recordLink(l.RecordID), link(l.Node, Prefix+"nodes/"+url.PathEscape(l.Node)), txt(l.Tenant), txt(l.Entity), txt(l.Model),
			c.timeCell(l.WindowStart), msCell(l.GPUMillis), fenCell(l.Cost), fenCell(l.Subsidy), fenCell(l.Held), fenCell(l.Payable), statusCell(lang, l.Review)})
	}
	return t
}

// totalsFigures are a claim's or statement's totals, each linking to
// the lines (the records) they sum.
func totalsFigures(t billing.Totals) []figure {
	const lines = "#t-lines"
	return []figure{{Label: "records", Value: strconv.Itoa(t.Records), Link: lines}, {Label: "gpu hours", Value: hours(t.GPUMillis), Link: lines},
		{Label: "cost", Value: yuan(t.Cost), Link: lines}, {Label: "subsidy", Value: yuan(t.Subsidy), Link: lines},
		{Label: "held", Value: yuan(t.Held), Link: lines}, {Label: "payable", Value: yuan(t.Payable), Link: lines}}
}

func (c *Console) claims(w http.ResponseWriter, r *http.Request, v viewer) {
	ctx := r.Context()
	prov := r.URL.Query().Get("provider")
	if prov == "" && v.Role == store.RoleProvider {
		prov = v.Scope
	}
	if c.may(ctx, v, kindProvider, prov) != nil && !(prov == "" && v.operator()) {
		c.forbidden(w, r, v)
		return
	}
	from, to, per, err := c.periodOf(r, Prefix+"claims", hidden{"provider", prov})
	if err != nil {
		http.Error(w, "period: "+err.Error(), http.StatusBadRequest)
		return
	}
	p := &page{Title: "claims", Sub: prov, V: v, Period: per}
	if prov == "" { // an operator: the providers of the period, each a link
		days, err := c.st.UsageByDay(ctx, store.ConsoleScope{}, from, to)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		by := map[string]int64{}
		for _, d := range days {
			by[d.Provider] += d.GPUMs
		}
		t := &table{ID: "providers", Title: "choose provider", Cols: []column{{"provider", "provider", false}, {"gpu_ms", "gpu hours", true}}}
		for pv, ms := range by {
			t.Rows = append(t.Rows, []cell{link(pv, Prefix+"claims?provider="+url.QueryEscape(pv)+"&"+periodQuery(from, to, c.loc)), msCell(ms)})
		}
		sortRows(t.Rows)
		p.Tables = []*table{t}
		c.render(w, r, http.StatusOK, "page", p)
		return
	}
	cl, err := c.st.Claim(ctx, prov, from, to)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	bt := &table{ID: "byvoucher", Title: "by voucher", Cols: []column{{"program", "program", false}, {"voucher", "voucher", false},
		{"records", "records", true}, {"amount_fen", "amount", true}}}
	for _, ct := range cl.ByVoucher {
		vc := txt(ct.Voucher)
		if v.operator() {
			vc.Link = Prefix + "vouchers/" + url.PathEscape(ct.Voucher) + "#t-history"
		}
		bt.Rows = append(bt.Rows, []cell{txt(ct.Program), vc, numCell(int64(ct.Records)), fenCell(ct.Amount)})
	}
	p.Figures = totalsFigures(cl.Totals)
	p.Tables = []*table{bt, c.linesTable(cl.Lines, v.Lang)}
	c.render(w, r, http.StatusOK, "page", p)
}

func (c *Console) statement(w http.ResponseWriter, r *http.Request, v viewer) {
	ctx := r.Context()
	ent := r.URL.Query().Get("entity")
	if ent == "" && v.Role == store.RoleEntity {
		ent = v.Scope
	}
	if ent == "" && v.operator() {
		http.Redirect(w, r, Prefix+"entities", http.StatusSeeOther)
		return
	}
	if c.may(ctx, v, kindEntity, ent) != nil {
		c.forbidden(w, r, v)
		return
	}
	from, to, per, err := c.periodOf(r, Prefix+"statement", hidden{"entity", ent})
	if err != nil {
		http.Error(w, "period: "+err.Error(), http.StatusBadRequest)
		return
	}
	st, err := c.st.Statement(ctx, ent, from, to)
	if !c.found(w, r, err, "entity") {
		return
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "statement", Sub: ent, V: v, Period: per,
		Figures: totalsFigures(st.Totals), Tables: []*table{c.linesTable(st.Lines, v.Lang)}})
}

func (c *Console) reviews(w http.ResponseWriter, r *http.Request, v viewer) {
	status := r.URL.Query().Get("status")
	rs, err := c.st.ListReviews(r.Context(), store.ReviewFilter{Status: status, Limit: store.MaxReviewLimit})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t := &table{ID: "reviews", Title: "reviews", Cols: []column{{"record_id", "record", false}, {"node", "node", false},
		{"provider", "provider", false}, {"entity", "entity", false}, {"window_start", "window start", true},
		{"reason", "reason", false}, {"held_fen", "held", true}, {"status", "status", false}, {"decided_by", "decided by", false},
		{"note", "note", false}, {"action", "action", false}}}
	for _, rv := range rs {
		act := cell{}
		if rv.Status == billing.ReviewHeld {
			base := Prefix + "reviews/" + url.PathEscape(rv.RecordID) + "/"
			act.Form = &decisionForm{Approve: base + "approve", Reject: base + "reject", CSRF: v.CSRF}
		}
		t.Rows = append(t.Rows, []cell{recordLink(rv.RecordID), link(rv.Node, Prefix+"nodes/"+url.PathEscape(rv.Node)),
			txt(rv.Provider), txt(rv.Entity), c.timeCell(rv.WindowStart), txt(rv.Reason), fenCell(rv.Held),
			statusCell(v.Lang, rv.Status), txt(rv.DecidedBy), txt(rv.Note), act})
	}
	p := &page{Title: "reviews", V: v, Tables: []*table{t}}
	switch r.URL.Query().Get("done") {
	case "1":
		p.Notice = "decision saved"
	case "note":
		p.Error = "reason required"
	}
	c.render(w, r, http.StatusOK, "page", p)
}

// ConsoleOperator is who decides a review from the console, in the
// review's decided_by.
const ConsoleOperator = "console-operator"

func (c *Console) decide(w http.ResponseWriter, r *http.Request, v viewer) {
	rec, note := r.PathValue("record"), strings.TrimSpace(r.PostFormValue("note"))
	ctx := store.WithActor(r.Context(), "console:"+v.Role+"@"+r.RemoteAddr)
	var err error
	switch r.PathValue("decision") {
	case "approve":
		_, err = c.st.ApproveReview(ctx, rec, ConsoleOperator, note, c.now())
	case "reject":
		if note == "" {
			http.Redirect(w, r, Prefix+"reviews?done=note", http.StatusSeeOther)
			return
		}
		_, err = c.st.RejectReview(ctx, rec, ConsoleOperator, note, c.now())
	default:
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	switch {
	case errors.Is(err, store.ErrBillingNotFound):
		http.Error(w, "no such review", http.StatusNotFound)
		return
	case errors.Is(err, store.ErrBillingConflict), errors.Is(err, store.ErrInvalidBilling):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"reviews?done=1", http.StatusSeeOther)
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, v viewer) {
	as, err := c.st.OperatorActions(r.Context(), store.ActionFilter{})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	t := &table{ID: "actions", Title: "audit", Cols: []column{{"at", "at", true}, {"actor", "actor", false},
		{"action", "action", false}, {"node", "node", false}, {"details", "details", false}}}
	for _, a := range as {
		t.Rows = append(t.Rows, []cell{c.timeCell(a.At), txt(a.Actor), txt(a.Action), txt(a.Node), txt(string(a.Details))})
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "audit", V: v, Tables: []*table{t}})
}
