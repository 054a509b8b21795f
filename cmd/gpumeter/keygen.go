package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gpumeter/gpumeter/metering/signing"
)

// cmdKeygen writes a new node key (mode 0600, never overwriting one) and
// prints what the voucher authority needs to register it. The private key
// is never printed.
func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: gpumeter keygen FILE")
		return exitUsage
	}
	path := fs.Arg(0)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		fmt.Fprintf(stderr, "gpumeter keygen: %v\n", err)
		return exitFailure
	}
	pub, err := signing.GenerateKeyFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "gpumeter keygen: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "key_file: %s\npublic_key: %s\nkey_id: %s\n", path, signing.EncodePublicKey(pub), signing.KeyID(pub))
	return exitOK
}
