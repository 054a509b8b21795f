package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

// auditCmd is the audit trail: refused requests, newest first (the store
// keeps each node's newest 10 000, and the first 64 KiB of each body), and
// the operator actions (audit_actions.go).
func auditCmd() *cobra.Command {
	c := group("audit", "recompute the books (--db), or the audit trail of refused requests and operator actions (docs/operations.md)",
		auditListCmd(), auditShowCmd(), auditActionsCmd())
	// Without a subcommand but with --db: the read-only recomputation of
	// the books (verify.go), exit 1 on any difference.
	db := c.Flags().String("db", "", "recompute the books of this database (read-only): "+dbUsage)
	from := c.Flags().String("from", "", "compare records and charges whose window starts at or after TIME")
	to := c.Flags().String("to", "", "compare records and charges whose window starts before TIME")
	format := formatFlag(c, "table", "json")
	trail := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 || *db == "" {
			return trail(cmd, args)
		}
		if code := runBooksAudit(cmd.Context(), *db, *from, *to, *format, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != exitOK {
			return exitStatus(code)
		}
		return nil
	}
	return c
}

// reviewCmd is the review queue of held subsidies (docs/billing.md "Held
// subsidies"), oldest first. Rejecting returns the held subsidy to the
// vouchers and the yearly caps; a review is decided once.
func reviewCmd() *cobra.Command {
	return group("review", "the review queue of held subsidies (docs/billing.md)",
		reviewListCmd(), reviewDecideCmd("approve"), reviewDecideCmd("reject"))
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

func auditListCmd() *cobra.Command {
	d := dbLeaf("list", "list refused requests, newest first", "table", "json")
	fs := d.Flags()
	node := fs.String("node", "", "only this node's refusals")
	unauth := fs.Bool("unauthenticated", false, "only refusals from before the sender was authenticated")
	cause := fs.String("cause", "", "only this cause (the problem type suffix: fork, over-gpu-time, ...)")
	since := fs.String("since", "", "received at or after TIME (RFC 3339, or YYYY-MM-DD: midnight UTC+8)")
	until := fs.String("until", "", "received before TIME")
	limit := fs.String("limit", "", fmt.Sprintf("at most this many, newest first (default %d, at most %d)", store.DefaultRefusalLimit, store.MaxRefusalLimit))
	var f store.RefusalFilter
	return runList(d, withStore, func() (err error) {
		f = store.RefusalFilter{Node: *node, Unauthenticated: *unauth, Cause: *cause}
		if *unauth && *node != "" {
			return fmt.Errorf("--node and --unauthenticated exclude each other")
		}
		if f.Since, err = optionalTime("since", *since); err == nil {
			if f.Until, err = optionalTime("until", *until); err == nil {
				f.Limit, err = limitFlag(*limit, store.MaxRefusalLimit)
			}
		}
		return err
	}, func(ctx context.Context, st *store.Store) ([]store.Refusal, error) {
		return st.ListRefusals(ctx, f)
	}, []string{"id", "received (UTC+8)", "node", "key", "first seq", "cause", "remote", "bytes", "sha256", "detail"},
		func(r store.Refusal) []string {
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
			return []string{strconv.FormatInt(r.ID, 10), formatSeconds(r.Received), oneLine(node), dash(oneLine(r.KeyID)),
				seq, oneLine(r.Cause), oneLine(r.Remote), size, r.SHA256[:min(12, len(r.SHA256))], oneLine(r.Detail)}
		})
}

func auditShowCmd() *cobra.Command {
	d := dbLeaf("show", "show one refused request (JSON), optionally writing its body out")
	idS := d.Flags().String("id", "", "refusal id (audit list)")
	out := d.Flags().String("envelope-out", "", "write the kept body (its first 64 KiB) to this new file, mode 0600")
	required(d.Command, "id")
	var id int64
	return d.run(withStore, func() (err error) {
		if id, err = strconv.ParseInt(*idS, 10, 64); err != nil || id < 1 {
			return fmt.Errorf("--id %q: want a whole number from 1", *idS)
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
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

func reviewListCmd() *cobra.Command {
	d := dbLeaf("list", "list reviews of held subsidies, oldest first", "table", "json")
	fs := d.Flags()
	status := fs.String("status", "", "only reviews in this status: held, approved or rejected")
	provider := fs.String("provider", "", "only this provider's")
	entity := fs.String("entity", "", "only this entity's")
	node := fs.String("node", "", "only this node's")
	limit := fs.String("limit", "", fmt.Sprintf("at most this many, oldest first (default %d, at most %d)", store.DefaultReviewLimit, store.MaxReviewLimit))
	var f store.ReviewFilter
	return d.run(withBilling, func() (err error) {
		f = store.ReviewFilter{Status: *status, Provider: *provider, Entity: *entity, Node: *node}
		f.Limit, err = limitFlag(*limit, store.MaxReviewLimit)
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		rs, err := st.ListReviews(ctx, f)
		if err != nil {
			return err
		}
		if *d.format == "json" {
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

func reviewDecideCmd(verb string) *cobra.Command {
	short := "approve a held subsidy: it is paid as billed"
	noteHelp := "why (kept with the decision)"
	if verb == "reject" {
		short = "reject a held subsidy: it returns to the vouchers and the tenant owes the cost"
		noteHelp = "why the subsidy is rejected (required, kept with the decision)"
	}
	d := dbLeaf(verb, short)
	record := d.Flags().String("record", "", "record id of the held charge (review list)")
	by := d.Flags().String("by", "", "who decides (kept with the decision)")
	note := d.Flags().String("note", "", noteHelp)
	required(d.Command, "record", "by")
	if verb == "reject" {
		required(d.Command, "note")
	}
	return d.run(withBilling, func() error {
		if verb == "reject" && strings.TrimSpace(*note) == "" {
			return errors.New("--note must say why")
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
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
