package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gpumeter/gpumeter/authority/store"
)

// recordLink is a record's page: where every figure's trail ends.
func recordLink(id string) cell { return link(id, recordHref(id)) }

func recordHref(id string) string { return Prefix + "records/" + url.PathEscape(id) }

// record shows one usage record, its charge and what vouchers paid toward
// it, and the signed batch it came in: node, sequence numbers, the batch's
// hash and, when the verifiable log holds the batch, its leaf index (what
// `voucher-authority log prove` and an auditor check).
func (c *Console) record(w http.ResponseWriter, r *http.Request, v viewer) {
	id, ok := c.pathVisible(w, r, v, kindRecord)
	if !ok {
		return
	}
	rec, err := c.st.ConsoleRecordByID(r.Context(), id)
	if !c.found(w, r, err, "record") {
		return
	}
	// Links lead only to pages the viewer may open: an entity does not see
	// a provider's nodes, nor a provider an entity's vouchers.
	nodeLink, provLink, entLink := "", "", ""
	if v.Role != store.RoleEntity {
		nodeLink, provLink = Prefix+"nodes/"+url.PathEscape(rec.Node), Prefix+"providers/"+url.PathEscape(rec.Provider)
	}
	if v.Role != store.RoleProvider {
		entLink = Prefix + "entities/" + url.PathEscape(rec.Entity)
	}
	fs := []figure{
		{Label: "node", Value: rec.Node, Link: nodeLink},
		{Label: "seq", Value: strconv.FormatInt(rec.Seq, 10)},
		{Label: "provider", Value: rec.Provider, Link: provLink},
		{Label: "tenant", Value: rec.Tenant},
		{Label: "model", Value: rec.Model},
		{Label: "gpus", Value: rec.GPU},
		{Label: "window start", Value: c.when(rec.WindowStart)},
		{Label: "window end", Value: c.when(rec.WindowEnd)},
		{Label: "gpu hours", Value: hours(rec.GPUMillis)},
		{Label: "batch", Value: strconv.FormatInt(rec.BatchFirst, 10) + "–" + strconv.FormatInt(rec.BatchLast, 10)},
		{Label: "batch hash", Value: rec.BatchHash},
		{Label: "received", Value: c.when(rec.BatchReceived)},
	}
	if rec.InLog {
		fs = append(fs, figure{Label: "log leaf", Value: strconv.FormatInt(rec.LeafIndex, 10)})
	} else {
		fs = append(fs, figure{Label: "log leaf", Value: text(v.Lang, "not in log")})
	}
	if rec.Billed {
		fs = append(fs, figure{Label: "entity", Value: rec.Entity, Link: entLink},
			figure{Label: "program", Value: rec.Program}, figure{Label: "cost", Value: yuan(rec.Cost)},
			figure{Label: "subsidy", Value: yuan(rec.Subsidy)}, figure{Label: "review", Value: statusText(v.Lang, rec.Review)})
	}
	gt := &table{ID: "grants", Title: "grants", Cols: []column{{"voucher", "voucher", false}, {"amount_fen", "amount", true}}}
	for _, g := range rec.Grants {
		vc := txt(g.Voucher)
		if entLink != "" {
			vc.Link = Prefix + "vouchers/" + url.PathEscape(g.Voucher) + "#t-history"
		}
		gt.Rows = append(gt.Rows, []cell{vc, fenCell(g.Amount)})
	}
	c.render(w, r, http.StatusOK, "page", &page{Title: "record", Sub: id, V: v, Figures: fs, Tables: []*table{gt}})
}

// found is true when err is nil; else it answers 404 "no such WHAT" for
// what the store does not have, or the failure page for any other error.
func (c *Console) found(w http.ResponseWriter, r *http.Request, err error, what string) bool {
	if errors.Is(err, store.ErrBillingNotFound) {
		http.Error(w, "no such "+what, http.StatusNotFound)
		return false
	}
	if err != nil {
		c.fail(w, r, err)
		return false
	}
	return true
}
