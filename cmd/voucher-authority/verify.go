package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/audit"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
)

// The books' proofs: export (statements and claims with their log
// proofs), verify (offline, with the log's key alone) and the audit's
// recomputation (docs/operations.md, "Auditing the books").

func exportCmd() *cobra.Command {
	return group("export", "statements and claims with their proofs in the verifiable log (docs/protocol.md)",
		exportLinesCmd("statement", "entity", "an entity's statement with its proofs"),
		exportLinesCmd("claim", "provider", "a provider's claim with its proofs"))
}

func exportLinesCmd(name, key, short string) *cobra.Command {
	d := dbLeaf(name, short)
	keyVal := d.Flags().String(key, "", key+" id")
	p := periodFlags(d.Command)
	cons := d.Flags().UintSlice("consistency-from", nil, "also prove that the checkpoint extends the tree of this size (repeatable): for checkpoints held elsewhere")
	required(d.Command, key)
	return d.run(withBilling, p.parse, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		var file audit.File
		if name == "statement" {
			s, err := st.Statement(ctx, *keyVal, p.from, p.to)
			if err != nil {
				return err
			}
			file.Statement = &s
		} else {
			cl, err := st.Claim(ctx, *keyVal, p.from, p.to)
			if err != nil {
				return err
			}
			file.Claim = &cl
		}
		sizes := make([]uint64, len(*cons))
		for i, n := range *cons {
			sizes[i] = uint64(n)
		}
		if err := audit.Export(ctx, st, &file, sizes); err != nil {
			return err
		}
		return printJSON(stdout, file)
	})
}

func verifyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "verify FILE",
		Short: "check a proof file offline with the log's verifier key (exit 1 naming each failure)",
		Long: `verify checks a proof file (export statement|claim) with nothing but the
log's note verifier key: the checkpoint's signature, every inclusion proof,
that each line's amounts are what its leaves say and, for each
--checkpoint (a note kept by an agent or a witness), that it is consistent
with the file's: two different checkpoints of one size are a split view.
It needs no database.`,
		Args: cobra.ExactArgs(1),
	}
	vkey := c.Flags().String("log-key", "", "the log's note verifier key ORIGIN+HASH+KEY, or a file holding it")
	others := c.Flags().StringArray("checkpoint", nil, "a checkpoint note file collected elsewhere (repeatable)")
	required(c, "log-key")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if code := runVerify(args[0], *vkey, *others, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != exitOK {
			return exitStatus(code)
		}
		return nil
	}
	return c
}

func runVerify(path, vkey string, others []string, stdout, stderr io.Writer) int {
	if b, err := os.ReadFile(vkey); err == nil {
		vkey = strings.TrimSpace(string(b))
	}
	v, err := tlog.NewVerifier(vkey)
	if err != nil {
		fmt.Fprintf(stderr, "verify: --log-key: %v\n", err)
		return exitUsage
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return exitFailure
	}
	var f audit.File
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		fmt.Fprintf(stderr, "verify: %s: not a proof file: %v\n", path, err)
		return exitFailure
	}
	var held []audit.Other
	for _, p := range others {
		n, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(stderr, "verify: --checkpoint: %v\n", err)
			return exitFailure
		}
		held = append(held, audit.Other{Name: p, Note: n})
	}
	fails := audit.Verify(&f, v, held)
	for _, m := range fails {
		fmt.Fprintf(stderr, "%s: %s\n", path, m)
	}
	if len(fails) > 0 {
		fmt.Fprintf(stderr, "%s: %d failures\n", path, len(fails))
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: %d lines, every proof holds against checkpoint %s", path, len(f.Lines), firstLines(f.Checkpoint))
	if len(held) > 0 {
		fmt.Fprintf(stdout, "; %d other checkpoints consistent", len(held))
	}
	fmt.Fprintln(stdout)
	return exitOK
}

// firstLines is a checkpoint's origin and size, for a message.
func firstLines(note string) string {
	ls := strings.SplitN(note, "\n", 3)
	if len(ls) < 2 {
		return note
	}
	return ls[0] + " size " + ls[1]
}

// runBooksAudit is `audit --db DB [--from --to]`: the read-only
// recomputation of the books; exit 1 on any difference.
func runBooksAudit(ctx context.Context, db, from, to, format string, stdout, stderr io.Writer) int {
	if !checkFormat(stderr, "audit", format, "table", "json") {
		return exitUsage
	}
	var opt audit.Options
	var err error
	if opt.From, err = optionalTime("from", from); err == nil {
		opt.To, err = optionalTime("to", to)
	}
	if err == nil && !opt.From.IsZero() && !opt.To.IsZero() && !opt.To.After(opt.From) {
		err = fmt.Errorf("--to must be after --from")
	}
	if err != nil {
		fmt.Fprintf(stderr, "audit: %v\n", err)
		return exitUsage
	}
	var rep audit.Report
	code := withStore(ctx, db, stderr, func(st *store.Store) error {
		rep, err = audit.Run(ctx, st, opt)
		return err
	})
	if code != exitOK {
		return code
	}
	if format == "json" {
		if err := printJSON(stdout, rep); err != nil {
			return exitFailure
		}
	} else {
		for _, d := range rep.Differences {
			fmt.Fprintln(stdout, oneLine(d.String()))
		}
		fmt.Fprintf(stdout, "%d batches, %d records, %d leaves, %d checkpoints: %d differences\n",
			rep.Batches, rep.Records, rep.Leaves, rep.Checkpoints, len(rep.Differences))
	}
	if !rep.Clean() {
		return exitFailure
	}
	return exitOK
}
