package authproc

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Flags registers the flags that say which authority a bench command runs
// and on what: --authority (the binary), --driver (defaultDriver unless
// given) and --pg (the DSN, default $GPUMETER_TEST_POSTGRES; pgUsage is its
// help).
func Flags(bin, driver, pg *string, defaultDriver, pgUsage string) {
	other := "sqlite"
	if defaultDriver == "sqlite" {
		other = "postgres"
	}
	flag.StringVar(bin, "authority", "voucher-authority", "voucher-authority binary")
	flag.StringVar(driver, "driver", defaultDriver, "authority store: "+defaultDriver+" or "+other)
	flag.StringVar(pg, "pg", os.Getenv("GPUMETER_TEST_POSTGRES"), pgUsage)
}

// Main runs a bench command's run until it returns or SIGINT or SIGTERM
// cancels it, and exits 1 with "name: error" on stderr when it fails.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Open makes the database a run asks for: driver "sqlite" (a file in dir)
// or "postgres" (a fresh database on the server the DSN pg names). Defer
// DropAfter once it succeeds.
func Open(ctx context.Context, driver, pg, dir string) (Database, error) {
	switch driver {
	case "sqlite":
		return SQLite(dir), nil
	case "postgres":
		if pg == "" {
			return Database{}, fmt.Errorf("--pg (or GPUMETER_TEST_POSTGRES) must name a PostgreSQL server")
		}
		return CreatePostgres(ctx, pg)
	default:
		return Database{}, fmt.Errorf("--driver %q: want sqlite or postgres", driver)
	}
}

// DropAfter drops d with a deadline of its own (the run's context may be
// done by then) and reports a failure in *err unless it holds one already.
func (d Database) DropAfter(err *error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if derr := d.Drop(ctx); *err == nil {
		*err = derr
	}
}
