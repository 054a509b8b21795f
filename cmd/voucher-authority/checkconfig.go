package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func checkConfigCmd() *cobra.Command {
	c := leaf("check-config", "check the serve configuration without serving")
	c.Long = `check-config runs every check serve does that does not need to serve: the
YAML and its values, the log settings, the store (SQLite: its directory
exists and is writable, the file if present opens; PostgreSQL: the DSN
parses and a connection succeeds), the TLS certificate and key (readable,
a matching pair), the client CA, the operators' token file (present, mode
0600) and the listen addresses.

Each failure is one line "error: FIELD: problem; fix" and exits 78; each
warning (a placeholder left from the shipped example, plain HTTP off
loopback) is one line "warning: FIELD: ..." and leaves the status 0. The
systemd unit runs it before serve (ExecStartPre).`
	cfgPath := configFlag(c)
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		_, findings := preflight(ctx, *cfgPath, true)
		if printFindings(stderr, findings) {
			return exitConfig
		}
		fmt.Fprintf(stdout, "%s: OK\n", *cfgPath)
		return exitOK
	})
}
