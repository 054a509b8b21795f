package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

// auditUsage is the help of the audit trail and review queue commands.
const auditUsage = `
Audit trail and review queue (docs/operations.md, docs/billing.md "Held subsidies"):
  voucher-authority audit list --db PATH [--node ID | --unauthenticated] [--cause C]
                    [--since TIME] [--until TIME] [--limit N] [--format table|json]
  voucher-authority audit show --db PATH --id N [--envelope-out FILE]
  voucher-authority review list --db PATH [--status held|approved|rejected] [--provider P]
                    [--entity ID] [--node ID] [--limit N] [--format table|json]
  voucher-authority review approve --db PATH --record ID --by NAME [--note TEXT]
  voucher-authority review reject --db PATH --record ID --by NAME --note REASON
Refusals are listed newest first (the store keeps each node's newest 10 000, and the first
64 KiB of each body); reviews oldest first. Rejecting returns the held subsidy to the vouchers
and the yearly caps; a review is decided once.
`

// cmdAudit dispatches audit and review command lines (args[0] is one).
func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb := ""
	if len(args) > 1 {
		verb = args[1]
	}
	switch args[0] + " " + verb {
	case "audit list":
		return cmdAuditList(ctx, args[2:], stdout, stderr)
	case "audit show":
		return cmdAuditShow(ctx, args[2:], stdout, stderr)
	case "review list":
		return cmdReviewList(ctx, args[2:], stdout, stderr)
	case "review approve", "review reject":
		return cmdReviewDecide(ctx, verb, args[2:], stdout, stderr)
	}
	if verb == "" || strings.HasPrefix(verb, "-") {
		fmt.Fprintf(stderr, "%s: a subcommand is required\n%s", args[0], auditUsage)
	} else {
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0]+" "+verb, auditUsage)
	}
	return exitUsage
}

// limitFlag parses --limit: "" is 0 (the store's default), else 1 to max.
func limitFlag(s string, max int) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("--limit %q: want a whole number from 1 to %d", s, max)
	}
	return n, nil
}

// optionalTime parses an optional TIME flag.
func optionalTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return timeFlag(name, s)
}

func cmdAuditList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit list", flag.ContinueOnError)
	db := dbFlag(fs)
	node := fs.String("node", "", "only this node's refusals")
	unauth := fs.Bool("unauthenticated", false, "only refusals from before the sender was authenticated")
	cause := fs.String("cause", "", "only this cause (the problem type suffix: fork, over-gpu-time, ...)")
	since := fs.String("since", "", "received at or after TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	until := fs.String("until", "", "received before TIME")
	limit := fs.String("limit", "", fmt.Sprintf("at most this many, newest first (default %d, at most %d)", store.DefaultRefusalLimit, store.MaxRefusalLimit))
	format := formatFlag(fs, "table", "json")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db}) ||
		!checkFormat(stderr, fs.Name(), *format, "table", "json") {
		return exitUsage
	}
	f := store.RefusalFilter{Node: *node, Unauthenticated: *unauth, Cause: *cause}
	var err error
	switch {
	case *unauth && *node != "":
		err = fmt.Errorf("--node and --unauthenticated exclude each other")
	default:
		if f.Since, err = optionalTime("since", *since); err == nil {
			if f.Until, err = optionalTime("until", *until); err == nil {
				f.Limit, err = limitFlag(*limit, store.MaxRefusalLimit)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		rs, err := st.ListRefusals(ctx, f)
		if err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(stdout, nonNil(rs))
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "id\treceived (UTC+8)\tnode\tkey\tfirst seq\tcause\tremote\tbytes\tsha256\tdetail")
		for _, r := range rs {
			node, seq, size := r.Node, "-", strconv.FormatInt(r.Size, 10)
			if node == "" {
				node = "(unauthenticated)"
			}
			if r.FirstSeq > 0 {
				seq = strconv.FormatUint(r.FirstSeq, 10)
			}
			if r.Truncated {
				size += " (cut)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, formatSeconds(r.Received), oneLine(node), dash(oneLine(r.KeyID)),
				seq, oneLine(r.Cause), oneLine(r.Remote), size, r.SHA256[:min(12, len(r.SHA256))], oneLine(r.Detail))
		}
		return tw.Flush()
	})
}

func cmdAuditShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit show", flag.ContinueOnError)
	db := dbFlag(fs)
	idS := fs.String("id", "", "refusal id (audit list)")
	out := fs.String("envelope-out", "", "write the kept body (its first 64 KiB) to this new file, mode 0600")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *idS}) {
		return exitUsage
	}
	id, err := strconv.ParseInt(*idS, 10, 64)
	if err != nil || id < 1 {
		fmt.Fprintf(stderr, "%s: --id %q: want a whole number from 1\n", fs.Name(), *idS)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		r, err := st.Refusal(ctx, id)
		if err != nil {
			return err
		}
		if *out != "" {
			// O_EXCL: never overwrite, never follow a link planted there.
			f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("--envelope-out: %w", err)
			}
			_, werr := f.Write(r.Envelope)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return fmt.Errorf("--envelope-out: %w", werr)
			}
		}
		return printJSON(stdout, r)
	})
}

func cmdReviewList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("review list", flag.ContinueOnError)
	db := dbFlag(fs)
	status := fs.String("status", "", "only reviews in this status: held, approved or rejected")
	provider := fs.String("provider", "", "only this provider's")
	entity := fs.String("entity", "", "only this entity's")
	node := fs.String("node", "", "only this node's")
	limit := fs.String("limit", "", fmt.Sprintf("at most this many, oldest first (default %d, at most %d)", store.DefaultReviewLimit, store.MaxReviewLimit))
	format := formatFlag(fs, "table", "json")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db}) ||
		!checkFormat(stderr, fs.Name(), *format, "table", "json") {
		return exitUsage
	}
	f := store.ReviewFilter{Status: *status, Provider: *provider, Entity: *entity, Node: *node}
	var err error
	if f.Limit, err = limitFlag(*limit, store.MaxReviewLimit); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitUsage
	}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		rs, err := st.ListReviews(ctx, f)
		if err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(stdout, nonNil(rs))
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "record\tstatus\tnode\tprovider\ttenant\tentity\twindow start (UTC+8)\theld CNY\treason\tdecided (UTC+8)\tby\tnote")
		var held billing.Fen
		for _, r := range rs {
			if r.Status == billing.ReviewHeld {
				held += r.Held
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RecordID, r.Status, oneLine(r.Node), oneLine(r.Provider),
				oneLine(r.Tenant), dash(r.Entity), formatTime(r.WindowStart), billing.FormatYuan(r.Held), oneLine(r.Reason),
				dash(formatTime(r.Decided)), dash(oneLine(r.DecidedBy)), dash(oneLine(r.Note)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d reviews; %s CNY of them still held\n", len(rs), billing.FormatYuan(held))
		return nil
	})
}

func cmdReviewDecide(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("review "+verb, flag.ContinueOnError)
	db := dbFlag(fs)
	record := fs.String("record", "", "record id of the held charge (review list)")
	by := fs.String("by", "", "who decides (kept with the decision)")
	noteHelp := "why (kept with the decision)"
	if verb == "reject" {
		noteHelp = "why the subsidy is rejected (required, kept with the decision)"
	}
	note := fs.String("note", "", noteHelp)
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	req := map[string]string{"db": *db, "record": *record, "by": *by}
	if verb == "reject" {
		req["note"] = strings.TrimSpace(*note)
	}
	if !required(stderr, fs.Name(), req) {
		return exitUsage
	}
	return withBilling(ctx, *db, stderr, func(st *store.Store) error {
		decide := st.ApproveReview
		if verb == "reject" {
			decide = st.RejectReview
		}
		r, err := decide(ctx, *record, *by, *note, time.Now())
		if err != nil {
			return err
		}
		switch verb {
		case "reject":
			fmt.Fprintf(stdout, "review of record %s rejected by %s: %s CNY returned to the vouchers; the tenant owes the cost\n",
				r.RecordID, r.DecidedBy, billing.FormatYuan(r.Held))
		default:
			fmt.Fprintf(stdout, "review of record %s approved by %s: %s CNY of subsidy paid as billed\n",
				r.RecordID, r.DecidedBy, billing.FormatYuan(r.Held))
		}
		return nil
	})
}

// oneLine makes text a sender or an operator wrote safe for one table
// cell: control and format characters (newlines, tabs, escapes,
// bidirectional overrides) become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf) {
			return ' '
		}
		return r
	}, s)
}

// formatSeconds prints a time in China Standard Time to the second.
func formatSeconds(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(server.ChinaStandardTime).Format("2006-01-02 15:04:05")
}
