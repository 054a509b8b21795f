package billing

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/inventory"
	"github.com/gpumeter/gpumeter/protocol"
)

// ErrInvalid is what every validation error wraps.
var ErrInvalid = errors.New("invalid billing input")

// FieldError is one bad value: which object, which field (its JSON name)
// and what is wrong with it.
type FieldError struct {
	Object string // "program", "voucher", "rate card", "entity", "tenant mapping"
	ID     string
	Field  string
	Msg    string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s: %s", e.Object, e.ID, e.Field, e.Msg)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// problems collects the FieldErrors of one object.
type problems struct {
	object, id string
	errs       []error
}

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Object: p.object, ID: p.id, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// oneOf adds field's problem unless v is a or b: required when empty.
func (p *problems) oneOf(field, v, a, b string) {
	switch v {
	case a, b:
	case "":
		p.add(field, "required: %q or %q", a, b)
	default:
		p.add(field, "%q is not %q or %q", v, a, b)
	}
}

// check adds field's problem why, if there is one (a valid* or ValidID
// answer: "" is valid).
func (p *problems) check(field, why string) {
	if why != "" {
		p.add(field, "%s", why)
	}
}

const maxIDLen = 128

// ValidID reports why id is not an object id, or "" if it is one: 1-128
// characters of A-Z a-z 0-9 . _ - (ids appear in CSV grant lists as
// "voucher:fen;voucher:fen", so ':' ';' ',' and spaces are out).
func ValidID(id string) string {
	if id == "" {
		return "required"
	}
	if len(id) > maxIDLen {
		return fmt.Sprintf("%d characters, at most %d", len(id), maxIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("%q has %q: only A-Z a-z 0-9 . _ - are allowed", id, c)
		}
	}
	return ""
}

const maxLabelLen = 256

// validLabel reports why s is not a label (a provider, tenant, GPU model,
// MIG profile: names that come from nodes), or "".
func validLabel(s string) string {
	if s == "" {
		return "required"
	}
	if err := protocol.CheckText("value", s, maxLabelLen); err != nil {
		return err.Error()
	}
	return ""
}

// validName is validLabel for the names that cross the wire (providers,
// tenants): protocol.CheckName, the rule the authority applies at ingest.
func validName(s string) string {
	if s == "" {
		return "required"
	}
	if err := protocol.CheckName("name", s); err != nil {
		return err.Error()
	}
	return ""
}

// validModel is why m is not a model of the authority's model table.
func validModel(m string) string {
	if why := validLabel(m); why != "" {
		return why
	}
	if _, ok := inventory.Lookup(m); !ok {
		return fmt.Sprintf("%q is not in the model table (voucher-authority models lists it)", m)
	}
	return ""
}

// CanonicalModel is the model table's id of m (an id or an NVML name), or
// m itself when the table does not know it (validation then refuses it).
func CanonicalModel(m string) string {
	if md, ok := inventory.Lookup(m); ok {
		return md.ID
	}
	return m
}

// Times are Unix ms in the store: keep them in years 1970-9999.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

func (p *problems) time(field string, t time.Time) bool {
	switch {
	case t.IsZero():
		p.add(field, "required")
	case t.Before(minTime) || !t.Before(maxTime):
		p.add(field, "%s is outside years 1970-9999", t.UTC().Format(time.RFC3339))
	default:
		return true
	}
	return false
}

func (p *problems) labels(field string, list []string, required bool) {
	if required && len(list) == 0 {
		p.add(field, "at least one is required")
	}
	seen := map[string]bool{}
	for i, s := range list {
		if why := validLabel(s); why != "" {
			p.add(fmt.Sprintf("%s[%d]", field, i), "%s", why)
		} else if seen[s] {
			p.add(fmt.Sprintf("%s[%d]", field, i), "%q is listed twice", s)
		}
		seen[s] = true
	}
}

func (p *problems) ratio(field string, r BasisPoints) {
	if r < 0 || r > bpDen {
		p.add(field, "%d bp is outside 0-10000 (0-100%%)", r)
	}
}

func (p *problems) fen(field string, f Fen, lo, hi Fen) {
	if f < lo || f > hi {
		p.add(field, "%d fen is outside %d-%d", f, lo, hi)
	}
}

// ValidateEntity checks an entity: its id and its related providers.
func ValidateEntity(e Entity) error {
	p := problems{object: "entity", id: e.ID}
	p.check("id", ValidID(e.ID))
	if len(e.Name) > maxLabelLen {
		p.add("name", "%d bytes, at most %d", len(e.Name), maxLabelLen)
	}
	p.labels("related_providers", e.RelatedProviders, false)
	for i, c := range e.Categories {
		field := fmt.Sprintf("categories[%d]", i)
		p.check(field+".name", ValidID(c.Name))
		okFrom := p.time(field+".from", c.From)
		if !c.To.IsZero() && p.time(field+".to", c.To) && okFrom && !c.To.After(c.From) {
			p.add(field+".to", "%s is not after from %s", rfc(c.To), rfc(c.From))
		}
		for j, d := range e.Categories[:i] {
			if d.Name == c.Name && overlaps(c.From, c.To, d.From, d.To) {
				p.add(field, "%q overlaps categories[%d] of the same name", c.Name, j)
			}
		}
	}
	return p.err()
}

// overlaps says whether [a0, a1) and [b0, b1) meet (a zero end: open).
func overlaps(a0, a1, b0, b1 time.Time) bool {
	return (a1.IsZero() || b0.Before(a1)) && (b1.IsZero() || a0.Before(b1))
}

// CanonicalProgram returns p with every model named by the model table's
// id (a program may name a model by its NVML name), so that it matches
// what ingest prices by: the GPU's registered model.
func CanonicalProgram(p Program) Program {
	if len(p.Models) > 0 {
		ms := make([]string, len(p.Models))
		for i, m := range p.Models {
			ms[i] = CanonicalModel(m)
		}
		p.Models = ms
	}
	if len(p.ModelRatios) > 0 {
		rs := make(map[string]BasisPoints, len(p.ModelRatios))
		for m, r := range p.ModelRatios {
			rs[CanonicalModel(m)] = r
		}
		p.ModelRatios = rs
	}
	return p
}

// ValidateProgram checks a program's every field; the error joins one
// *FieldError per problem.
func ValidateProgram(pr Program) error {
	p := problems{object: "program", id: pr.ID}
	p.check("id", ValidID(pr.ID))
	for i, pv := range pr.Providers {
		if why := validName(pv); why != "" && validLabel(pv) == "" {
			p.add(fmt.Sprintf("providers[%d]", i), "%s", why)
		}
	}
	p.check("issuer", validLabel(pr.Issuer))
	if len(pr.Name) > maxLabelLen {
		p.add("name", "%d bytes, at most %d", len(pr.Name), maxLabelLen)
	}
	p.ratio("ratio_bp", pr.Ratio)
	for _, m := range slices.Sorted(maps.Keys(pr.ModelRatios)) {
		field := "model_ratios_bp[" + m + "]"
		if why := validLabel(m); why != "" {
			p.add(field, "model: %s", why)
		}
		p.ratio(field, pr.ModelRatios[m])
		if len(pr.Models) > 0 && !slices.Contains(pr.Models, m) {
			p.add(field, "%q is not in models, so the ratio would never apply", m)
		}
	}
	// A yearly cap is part of every program (docs/billing.md); 0 would be
	// a program that pays nothing.
	p.fen("cap_per_entity_year_fen", pr.CapPerYear, 1, MaxFen)
	p.fen("cap_per_entity_lifetime_fen", pr.CapLifetime, 0, MaxFen)
	p.labels("providers", pr.Providers, true)
	// A program may name models outside the authority's table (chips of
	// other makers that no node is registered with yet): such a name
	// matches no registered GPU. Names the table knows are stored by its
	// id (CanonicalProgram), so NVML names and ids both match.
	p.labels("models", pr.Models, false)
	okFrom := p.time("valid_from", pr.ValidFrom)
	okTo := p.time("valid_to", pr.ValidTo)
	if okFrom && okTo && !pr.ValidTo.After(pr.ValidFrom) {
		p.add("valid_to", "%s is not after valid_from %s", rfc(pr.ValidTo), rfc(pr.ValidFrom))
	}
	p.oneOf("rounding", pr.Rounding, RoundHalfUp, RoundTruncate)
	p.oneOf("settlement", pr.Settlement, SettleAfter, SettlePointOfSale)
	validateTerms(&p, pr)
	return p.err()
}

// maxTermMonths bounds a voucher term: 100 years.
const maxTermMonths = 1200

// validateTerms checks the terms a program states beyond its ratio and
// caps: provider approvals, category terms, voucher term and face
// bounds, and budget.
func validateTerms(p *problems, pr Program) {
	for _, prov := range slices.Sorted(maps.Keys(pr.Approvals)) {
		a, field := pr.Approvals[prov], "provider_approvals["+prov+"]"
		if !slices.Contains(pr.Providers, prov) {
			p.add(field, "%q is not in providers", prov)
		}
		okFrom := a.From.IsZero() || p.time(field+".from", a.From)
		okTo := a.To.IsZero() || p.time(field+".to", a.To)
		if okFrom && okTo && !a.From.IsZero() && !a.To.IsZero() && !a.To.After(a.From) {
			p.add(field+".to", "%s is not after from %s", rfc(a.To), rfc(a.From))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pr.CategoryTerms)) {
		t, field := pr.CategoryTerms[name], "category_terms["+name+"]"
		if why := ValidID(name); why != "" {
			p.add(field, "category: %s", why)
		}
		p.ratio(field+".ratio_bp", t.Ratio)
		p.fen(field+".cap_per_entity_year_fen", t.CapPerYear, 0, MaxFen)
	}
	switch {
	case pr.VoucherTermMonths < 0 || pr.VoucherTermMonths > maxTermMonths:
		p.add("voucher_term_months", "%d is outside 0-%d", pr.VoucherTermMonths, maxTermMonths)
	case pr.VoucherTermMonths > 0 && pr.TermFrom != TermFromIssue && pr.TermFrom != TermFromFirstUse:
		p.add("voucher_term_from", "%q is not %q or %q", pr.TermFrom, TermFromIssue, TermFromFirstUse)
	case pr.VoucherTermMonths == 0 && pr.TermFrom != "":
		p.add("voucher_term_from", "%q without voucher_term_months", pr.TermFrom)
	}
	p.fen("voucher_min_fen", pr.VoucherMin, 0, MaxFen)
	p.fen("voucher_max_fen", pr.VoucherMax, 0, MaxFen)
	if pr.VoucherMax > 0 && pr.VoucherMin > pr.VoucherMax {
		p.add("voucher_max_fen", "%d fen is below voucher_min_fen %d", pr.VoucherMax, pr.VoucherMin)
	}
	p.fen("budget_per_year_fen", pr.BudgetPerYear, 0, MaxFen)
}

// ValidateVoucher checks a voucher on its own.
func ValidateVoucher(v Voucher) error {
	p := problems{object: "voucher", id: v.ID}
	p.check("id", ValidID(v.ID))
	p.check("program", ValidID(v.Program))
	p.check("holder", ValidID(v.Holder))
	p.fen("face_fen", v.Face, 1, MaxFen)
	if v.Balance < 0 || v.Balance > v.Face {
		p.add("balance_fen", "%d fen is outside 0-face (%d)", v.Balance, v.Face)
	}
	okI := p.time("issued", v.Issued)
	okE := p.time("expires", v.Expires)
	if okI && okE && !v.Expires.After(v.Issued) {
		p.add("expires", "%s is not after issued %s", rfc(v.Expires), rfc(v.Issued))
	}
	switch v.Status {
	case VoucherActive, VoucherSuspended, VoucherRevoked:
	default:
		p.add("status", "%q is not %q, %q or %q", v.Status, VoucherActive, VoucherSuspended, VoucherRevoked)
	}
	return p.err()
}

// CheckIssue checks a voucher about to be issued under program pr at now:
// valid on its own, of that program, not already expired, and within the
// program's validity (a voucher pays only while its program is valid, so
// dates outside it are an operator's mistake).
func CheckIssue(v Voucher, pr Program, now time.Time) error {
	if err := ValidateVoucher(v); err != nil {
		return err
	}
	p := problems{object: "voucher", id: v.ID}
	if v.Program != pr.ID {
		p.add("program", "%q, checked against program %q", v.Program, pr.ID)
	}
	if !v.Expires.After(now) {
		p.add("expires", "%s: the voucher is already expired (now %s)", rfc(v.Expires), rfc(now))
	}
	if !pr.ValidTo.After(now) {
		p.add("program", "program %q ended at %s", pr.ID, rfc(pr.ValidTo))
	}
	if v.Issued.Before(pr.ValidFrom) {
		p.add("issued", "%s is before program %q's valid_from %s", rfc(v.Issued), pr.ID, rfc(pr.ValidFrom))
	}
	if v.Expires.After(pr.ValidTo) {
		p.add("expires", "%s is after program %q's valid_to %s", rfc(v.Expires), pr.ID, rfc(pr.ValidTo))
	}
	if pr.TermFrom == TermFromIssue && pr.VoucherTermMonths > 0 {
		if end := AddMonths(v.Issued, pr.VoucherTermMonths); v.Expires.After(end) {
			p.add("expires", "%s is more than program %q's voucher term of %d months after issued %s (at most %s)",
				rfc(v.Expires), pr.ID, pr.VoucherTermMonths, rfc(v.Issued), rfc(end))
		}
	}
	if pr.VoucherMin > 0 && v.Face < pr.VoucherMin {
		p.add("face_fen", "%d fen is below program %q's minimum per voucher %d", v.Face, pr.ID, pr.VoucherMin)
	}
	if pr.VoucherMax > 0 && v.Face > pr.VoucherMax {
		p.add("face_fen", "%d fen is above program %q's maximum per voucher %d", v.Face, pr.ID, pr.VoucherMax)
	}
	return p.err()
}

// ValidateRateCard checks a rate card on its own (overlaps are the
// store's to check).
func ValidateRateCard(c RateCard) error {
	p := problems{object: "rate card", id: c.ID}
	p.check("id", ValidID(c.ID))
	p.check("provider", validName(c.Provider))
	p.check("model", validModel(c.Model))
	if c.MIGProfile != "" {
		p.check("mig_profile", validLabel(c.MIGProfile))
	}
	p.fen("price_fen_per_hour", c.PricePerHour, 0, MaxPricePerHour)
	okFrom := p.time("valid_from", c.ValidFrom)
	if !c.ValidTo.IsZero() && p.time("valid_to", c.ValidTo) && okFrom && !c.ValidTo.After(c.ValidFrom) {
		p.add("valid_to", "%s is not after valid_from %s", rfc(c.ValidTo), rfc(c.ValidFrom))
	}
	return p.err()
}

// ValidateMapping checks a tenant mapping's three names.
func ValidateMapping(provider, tenant, entityID string) error {
	p := problems{object: "tenant mapping", id: provider + "/" + tenant}
	p.check("provider", validName(provider))
	if why := validName(tenant); why != "" {
		p.add("tenant", "%s", why)
	} else if strings.EqualFold(strings.TrimSpace(tenant), protocol.TenantUnattributed) {
		p.add("tenant", "%q is reserved for usage no attribution rule claimed: it is never billable", tenant)
	}
	p.check("entity", ValidID(entityID))
	return p.err()
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
