// Command voucher-authority is the reference voucher authority: it serves
// the delivery protocol (serve), checks its configuration (check-config),
// keeps the node registry (node, key), answers usage and head queries from
// the database, and keeps billing (entity, tenant, program, voucher,
// ratecard, statement, claim) and the audit trail (audit, review).
//
// The command line is github.com/spf13/cobra: each command group is one
// file with a constructor returning its *cobra.Command, and newRoot below
// lists the groups. To add a command, write its constructor (leaf, its
// flags, required, action) in a file of its own and add it to its group's
// AddCommand list.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	promversion "github.com/prometheus/common/version"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/exitcode"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit statuses (internal/exitcode): a bad command line is 64, every
// configuration failure of serve and check-config 78, a runtime failure 1.
// 2 is never used: Go exits 2 on a panic, which must be restarted.
const (
	exitOK      = exitcode.OK
	exitFailure = exitcode.Failure
	exitUsage   = exitcode.Usage
	exitConfig  = exitcode.Config
)

const rootLong = `voucher-authority is the reference voucher authority for gpumeter.

DB (--db) is the authority's database: a SQLite file (the config's store.path),
or a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE?sslmode=... (the
config's store.dsn). Give the PostgreSQL password in PGPASSWORD or ~/.pgpass
rather than in the URL, where other users can see it in ps.

TIME is RFC 3339 (2026-11-23T08:00:00Z) or a date YYYY-MM-DD, meaning that
day's midnight China Standard Time (UTC+8). Money is CNY: --*-yuan takes a
decimal with at most 2 places, --*-fen a whole number of fen.

Billing set-up and the rules: docs/billing.md (installed with the package
in /usr/share/doc/voucher-authority/, with example programs in examples/).

Exit status: 0 success; 1 a runtime failure (the store refused or is
unreachable, an unknown id, a conflict); 64 a bad command line or input the
rules refuse; 78 a configuration serve cannot start with.`

// dbUsage is the help text of every --db flag.
const dbUsage = "database: a SQLite file, or a postgres:// URL (password from PGPASSWORD or ~/.pgpass)"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := group("voucher-authority", "the reference voucher authority for gpumeter",
		serveCmd(), checkConfigCmd(),
		nodeCmd(), modelsCmd(), keyCmd(), usageCmd(), headCmd(), coverageCmd(),
		entityCmd(), tenantCmd(), programCmd(), voucherCmd(), ratecardCmd(), statementCmd(), claimCmd(),
		auditCmd(), reviewCmd(), logCmd(), exportCmd(), verifyCmd(), tokenCmd(),
		versionCmd(),
	)
	root.Long = rootLong
	root.SilenceErrors = true // run prints errors, with the exit status
	root.SilenceUsage = true
	return root
}

// run runs a command line; it is main without the process, and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	// Anything else is cobra's: an unknown command or flag, a missing
	// required flag, an argument where none is taken.
	path := root.Name()
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "Error: %v\nRun '%s --help' for usage.\n", err, path)
	return exitUsage
}

// exitStatus is a command's exit status other than 0; the command has
// printed its message.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// group is a command group of subcommands: run alone, or with an unknown
// subcommand, it is a usage error that prints its usage to stderr.
func group(use, short string, subcommands ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	c.AddCommand(subcommands...)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		stderr := cmd.ErrOrStderr()
		if len(args) == 0 {
			fmt.Fprintf(stderr, "Error: %s: a subcommand is required\n\n", cmd.CommandPath())
		} else {
			fmt.Fprintf(stderr, "Error: unknown command %q for %q\n\n", args[0], cmd.CommandPath())
		}
		fmt.Fprint(stderr, cmd.UsageString())
		return exitStatus(exitUsage)
	}
	return c
}

// leaf is a command that takes flags and no arguments.
func leaf(use, short string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
}

// required marks flags of c required: cobra reports every missing one,
// in order, before the command runs.
func required(c *cobra.Command, names ...string) {
	for _, n := range names {
		if err := c.MarkFlagRequired(n); err != nil {
			panic(err) // a flag not defined: a bug in the command
		}
	}
}

// action makes body c's action. body prints what it has to say and
// returns the exit status.
func action(c *cobra.Command, body func(ctx context.Context, stdout, stderr io.Writer) int) *cobra.Command {
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if code := body(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()); code != exitOK {
			return exitStatus(code)
		}
		return nil
	}
	return c
}

// dbFlag is the required --db flag.
func dbFlag(c *cobra.Command) *string {
	db := c.Flags().String("db", "", dbUsage)
	required(c, "db")
	return db
}

// dbCmd is a leaf command on the database: --db and, where it prints a
// report in more than one form, --format. Its flags are defined on the
// embedded command; run makes its action.
type dbCmd struct {
	*cobra.Command
	db      *string
	format  *string // nil without --format
	formats []string
}

// dbLeaf is a leaf command with --db and, given formats, --format with
// those values, the first the default.
func dbLeaf(use, short string, formats ...string) *dbCmd {
	c := leaf(use, short)
	d := &dbCmd{Command: c, db: dbFlag(c), formats: formats}
	if len(formats) > 0 {
		d.format = formatFlag(c, formats...)
	}
	return d
}

// opener runs fn on the store a --db value names and says the exit
// status: withStore, or withBilling and withRegistry, which make the
// store's refusals of the input usage errors.
type opener func(ctx context.Context, db string, stderr io.Writer, fn func(st *store.Store) error) int

// run makes d's action: it checks --format, then runs parse (nil: none),
// which reads the flags' values before the store is opened (an error is
// a usage error, exit 64, printed after the command's name), then runs
// body on the store open opens.
func (d *dbCmd) run(open opener, parse func() error, body func(ctx context.Context, st *store.Store, stdout io.Writer) error) *cobra.Command {
	return action(d.Command, func(ctx context.Context, stdout, stderr io.Writer) int {
		name := strings.TrimPrefix(d.CommandPath(), d.Root().Name()+" ")
		if d.format != nil && !checkFormat(stderr, name, *d.format, d.formats...) {
			return exitUsage
		}
		if parse != nil {
			if err := parse(); err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", name, err)
				return exitUsage
			}
		}
		return open(ctx, *d.db, stderr, func(st *store.Store) error { return body(ctx, st, stdout) })
	})
}

// idChangeCmd is a command that changes one object named by a required
// flag (--id, --key-id): change makes the change and says what it did.
func idChangeCmd(use, short, flag, help string, open opener,
	change func(ctx context.Context, st *store.Store, id string) (said string, err error)) *cobra.Command {
	d := dbLeaf(use, short)
	id := d.Flags().String(flag, "", help)
	required(d.Command, flag)
	return d.run(open, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		said, err := change(ctx, st, *id)
		return done(err, stdout, "%s\n", said)
	})
}

// nodeFlag is the required --node flag of a command on one node.
func nodeFlag(d *dbCmd) *string {
	node := d.Flags().String("node", "", "node id")
	required(d.Command, "node")
	return node
}

// done is the end of a command that changes the store: err is the
// change's outcome; without one, it prints what was done.
func done(err error, w io.Writer, format string, args ...any) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(w, format, args...)
	return nil
}

// formatFlag is --format with its allowed values, the first the default.
func formatFlag(c *cobra.Command, allowed ...string) *string {
	f := c.Flags().String("format", allowed[0], strings.Join(allowed, " or "))
	_ = c.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
	return f
}

// checkFormat reports a --format outside allowed.
func checkFormat(stderr io.Writer, cmd, format string, allowed ...string) bool {
	for _, a := range allowed {
		if format == a {
			return true
		}
	}
	fmt.Fprintf(stderr, "%s: --format %q: want %s\n", cmd, format, strings.Join(allowed, ", "))
	return false
}

func versionCmd() *cobra.Command {
	return action(leaf("version", "print the version"), func(_ context.Context, stdout, _ io.Writer) int {
		if promversion.Version == "" {
			fmt.Fprintln(stdout, version)
		} else {
			fmt.Fprintln(stdout, promversion.Print("voucher-authority"))
		}
		return exitOK
	})
}

// withStore opens the database named by a --db value (dbSource) for a
// registry or query command.
func withStore(ctx context.Context, db string, stderr io.Writer, fn func(st *store.Store) error) int {
	driver, source := dbSource(db)
	st, err := store.Open(ctx, driver, source)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	err = fn(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	return exitOK
}

// dbSource says which store a --db value names: a postgres:// or
// postgresql:// URL is PostgreSQL, anything else a SQLite file (as --db
// always was).
func dbSource(db string) (driver, source string) {
	if l := strings.ToLower(db); strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://") {
		return store.DriverPostgres, db
	}
	return store.DriverSQLite, db
}
