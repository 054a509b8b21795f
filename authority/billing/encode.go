package billing

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sum totals lines. Statements and claims take their totals from it, so
// lines always sum to the totals exactly.
func Sum(lines []Line) Totals {
	var t Totals
	for _, l := range lines {
		t.Records++
		t.GPUMillis += l.GPUMillis
		t.Cost += l.Cost
		t.Subsidy += l.Subsidy
		t.Held += l.Held
		t.Payable += l.Payable
		if l.Note == NoteUnpriced {
			t.Unpriced++
		}
		switch l.Review {
		case ReviewHeld:
			t.HeldRecords++
		case ReviewRejected:
			t.RejectedRecords++
		}
		t.TenantPaysProvider += l.TenantPaysProvider
		t.ProviderClaims += l.ProviderClaims
		t.Reimbursed += l.Reimbursed
		if len(l.Pieces) > 1 {
			t.SplitRecords++
		}
		switch {
		case l.Limit == LimitYearCap || l.Limit == LimitLifetime:
			t.CapRecords++
		case l.Limit == LimitBudget || l.Note == NoteBudgetSpent:
			t.BudgetRecords++
		case l.Note == NoteProviderNotApproved:
			t.ApprovalRecords++
		}
	}
	return t
}

// Settle fills in who pays whom for l by its program's settlement
// (docs/billing.md, "Settlement"), from its Cost, Subsidy (paid) and
// Payable: at the point of sale the tenant pays the provider Payable and
// the provider claims Subsidy from the issuer; after settlement the tenant
// pays the provider the whole Cost and the issuer reimburses it Subsidy.
// A held subsidy is owed by nobody yet at the point of sale, and is paid
// by the tenant (reimbursed once approved) after settlement. Usage no
// program paid for is paid in full to the provider.
func (l *Line) Settle() {
	l.ProviderClaims, l.Reimbursed = 0, 0
	switch l.Settlement {
	case SettlePointOfSale:
		l.TenantPaysProvider, l.ProviderClaims = l.Payable, l.Subsidy
	case SettleAfter:
		l.TenantPaysProvider, l.Reimbursed = l.Cost, l.Subsidy
	default:
		l.TenantPaysProvider = l.Payable
	}
}

// SumByVoucher totals the grants of paid lines per program and voucher,
// sorted by program then voucher: what a provider claims from each issuer.
// A held line's grants are not claimable until approved.
func SumByVoucher(lines []Line) []ClaimTotal {
	type key struct{ program, voucher string }
	by := map[key]*ClaimTotal{}
	for _, l := range lines {
		if !Paid(l.Review) {
			continue
		}
		for _, g := range l.Grants {
			k := key{l.Program, g.Voucher}
			if g.Program != "" {
				k.program = g.Program // a split record's pieces may have several
			}
			ct := by[k]
			if ct == nil {
				ct = &ClaimTotal{Program: k.program, Voucher: g.Voucher, Settlement: l.Settlement}
				by[k] = ct
			}
			ct.Records++
			ct.Amount += g.Amount
		}
	}
	out := make([]ClaimTotal, 0, len(by))
	for _, ct := range by {
		out = append(out, *ct)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Program != out[j].Program {
			return out[i].Program < out[j].Program
		}
		return out[i].Voucher < out[j].Voucher
	})
	return out
}

// WriteStatementJSON writes s as one JSON object (the types' encoding).
func WriteStatementJSON(w io.Writer, s Statement) error {
	if s.Lines == nil {
		s.Lines = []Line{}
	}
	return json.NewEncoder(w).Encode(s)
}

// WriteClaimJSON writes c as one JSON object (the types' encoding).
func WriteClaimJSON(w io.Writer, c Claim) error {
	if c.Lines == nil {
		c.Lines = []Line{}
	}
	if c.ByVoucher == nil {
		c.ByVoucher = []ClaimTotal{}
	}
	return json.NewEncoder(w).Encode(c)
}

// LinesCSVHeader is the header row of statement and claim lines as CSV.
var LinesCSVHeader = []string{
	"record_id", "node", "provider", "tenant", "entity", "gpu_uuid", "model", "mig_profile",
	"window_start", "window_end", "gpu_ms", "rate_card", "price_fen_per_hour",
	"cost_fen", "subsidy_fen", "held_subsidy_fen", "payable_fen", "program", "grants", "note", "review",
}

// WriteLinesCSV writes statement or claim lines as CSV (RFC 4180): the
// header, then one row per usage record. Money is integer fen, times RFC
// 3339 UTC, grants "voucher:fen" pairs joined by ';' (ids cannot hold ':'
// or ';'). A held line shows its subsidy in held_subsidy_fen and review
// "held" (its grants are listed, not yet claimable); a rejected one
// subsidy 0 and review "rejected". Totals are not a row: the rows sum to
// them exactly.
//
// Names that nodes send (node, provider, tenant, GPU, model, profile) and
// that begin with = + - @ or a tab get a leading "'", so that a
// spreadsheet opening the statement shows them instead of running them as
// formulas (OWASP, CSV injection).
func WriteLinesCSV(w io.Writer, lines []Line) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(LinesCSVHeader); err != nil {
		return err
	}
	row := make([]string, 0, len(LinesCSVHeader))
	var grants strings.Builder
	for _, l := range lines {
		grants.Reset()
		for i, g := range l.Grants {
			if i > 0 {
				grants.WriteByte(';')
			}
			grants.WriteString(g.Voucher)
			grants.WriteByte(':')
			grants.WriteString(fen(g.Amount))
		}
		row = append(row[:0], l.RecordID, cell(l.Node), cell(l.Provider), cell(l.Tenant), l.Entity,
			cell(l.GPUUUID), cell(l.Model), cell(l.MIGProfile), csvTime(l.WindowStart), csvTime(l.WindowEnd),
			strconv.FormatInt(l.GPUMillis, 10), l.RateCard, fen(l.PricePerHour), fen(l.Cost), fen(l.Subsidy),
			fen(l.Held), fen(l.Payable), l.Program, grants.String(), l.Note, l.Review)
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ClaimTotalsCSVHeader is the header row of a claim's totals per voucher.
var ClaimTotalsCSVHeader = []string{"program", "voucher", "records", "amount_fen"}

// WriteClaimTotalsCSV writes a claim's totals per program and voucher.
func WriteClaimTotalsCSV(w io.Writer, totals []ClaimTotal) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ClaimTotalsCSVHeader); err != nil {
		return err
	}
	for _, t := range totals {
		if err := cw.Write([]string{t.Program, t.Voucher, strconv.Itoa(t.Records), fen(t.Amount)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func fen(f Fen) string { return strconv.FormatInt(int64(f), 10) }

func csvTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
