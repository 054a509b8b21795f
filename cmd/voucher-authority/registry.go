package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	*l = append(*l, v)
	return nil
}

func cmdNodeRegister(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("node register", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	id := fs.String("id", "", "node id (as in the agent's node.id)")
	provider := fs.String("provider", "", "provider the node belongs to")
	pubB64 := fs.String("public-key", "", "the node's Ed25519 public key (base64, as printed by gpumeter keygen)")
	var gpus listFlag
	fs.Var(&gpus, "gpu", "GPU UUID the node owns (repeat for each GPU)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id, "provider": *provider, "public-key": *pubB64}) {
		return exitUsage
	}
	if len(gpus) == 0 {
		fmt.Fprintln(stderr, "node register: at least one --gpu is required")
		return exitUsage
	}
	pub, err := signing.DecodePublicKey(*pubB64)
	if err != nil {
		fmt.Fprintf(stderr, "node register: --public-key: %v\n", err)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.RegisterNode(ctx, *id, *provider, pub, gpus, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered node %s (provider %s) with key %s and %d GPUs\n", *id, *provider, signing.KeyID(pub), len(gpus))
		return nil
	})
}

func cmdKeyRotate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("key rotate", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	node := fs.String("node", "", "node id")
	pubB64 := fs.String("public-key", "", "the node's new Ed25519 public key (base64)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "node": *node, "public-key": *pubB64}) {
		return exitUsage
	}
	pub, err := signing.DecodePublicKey(*pubB64)
	if err != nil {
		fmt.Fprintf(stderr, "key rotate: --public-key: %v\n", err)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		id, err := st.AddKey(ctx, *node, pub, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added key %s to node %s; earlier keys stay valid until revoked\n", id, *node)
		return nil
	})
}

func cmdKeyRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("key revoke", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	keyID := fs.String("key-id", "", "key id (ed25519:...)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "key-id": *keyID}) {
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.RevokeKey(ctx, *keyID, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s\n", *keyID)
		return nil
	})
}

func cmdUsage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	tenant := fs.String("tenant", "", "only this tenant")
	node := fs.String("node", "", "only this node")
	from := fs.String("from", "", "period start (RFC 3339)")
	to := fs.String("to", "", "period end (RFC 3339, exclusive)")
	format := fs.String("format", "json", "json or table")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "from": *from, "to": *to}) {
		return exitUsage
	}
	if *format != "json" && *format != "table" {
		fmt.Fprintf(stderr, "usage: --format %q: want json or table\n", *format)
		return exitUsage
	}
	f, t, err := server.ParsePeriod(*from, *to)
	if err != nil {
		fmt.Fprintf(stderr, "usage: %v\n", err)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		filter := store.UsageFilter{Tenant: *tenant, Node: *node, From: f, To: t}
		rows, err := st.Usage(ctx, filter)
		if err != nil {
			return err
		}
		rep := server.NewUsageReport(filter, rows)
		if *format == "table" {
			return usageTable(stdout, rep)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	})
}

func cmdHead(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("head", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	node := fs.String("node", "", "node id")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "node": *node}) {
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		n, err := st.Node(ctx, *node)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"node": n.ID, "provider": n.Provider, "head": n.HeadSeq, "head_hash": n.HeadHash,
			"forked": n.Forked, "gpus": n.GPUs})
	})
}

// usageTable prints accepted usage per tenant and node in GPU-hours,
// computed from integer milliseconds without floating point.
func usageTable(w io.Writer, rep server.UsageReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tenant\tnode\trecords\tGPU-ms\tGPU-hours\t")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t\n", r.Tenant, r.Node, r.Records, r.GPUMs, protocol.FormatHours(r.GPUMs))
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%s\t\n", rep.TotalGPUMs, protocol.FormatHours(rep.TotalGPUMs))
	return tw.Flush()
}
