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

	"github.com/gpumeter/gpumeter/authority/inventory"
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

// gpuFlags are the --gpu, --model and --since flags of node register and
// node add-gpu: --gpu UUID[=MODEL] repeated, --model for those without one.
type gpuFlags struct {
	gpus  listFlag
	model *string
	since *string
}

func addGPUFlags(fs *flag.FlagSet) *gpuFlags {
	g := &gpuFlags{}
	fs.Var(&g.gpus, "gpu", "GPU UUID the node owns, optionally UUID=MODEL (repeat for each GPU)")
	g.model = fs.String("model", "", "model of every --gpu given without =MODEL: an id or NVML name of the model table (voucher-authority models)")
	g.since = fs.String("since", "", "when the GPUs entered service, as you attest (RFC 3339 or YYYY-MM-DD, China Standard Time; default now): no window before it is paid")
	return g
}

// resolve turns the flags into GPUs with models of the model table.
func (g *gpuFlags) resolve(cmd string) ([]store.GPU, time.Time, error) {
	if len(g.gpus) == 0 {
		return nil, time.Time{}, fmt.Errorf("%s: at least one --gpu is required", cmd)
	}
	var since time.Time
	if *g.since != "" {
		t, err := server.ParseBillingTime(*g.since)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%s: --since: %v", cmd, err)
		}
		since = t
	}
	out := make([]store.GPU, 0, len(g.gpus))
	for _, v := range g.gpus {
		uuid, model, ok := strings.Cut(v, "=")
		if !ok {
			model = *g.model
		}
		if model == "" {
			return nil, time.Time{}, fmt.Errorf("%s: --gpu %s: no model (give --model or --gpu UUID=MODEL)", cmd, v)
		}
		m, found := inventory.Lookup(model)
		if !found {
			return nil, time.Time{}, fmt.Errorf("%s: --gpu %s: model %q is not in the model table (voucher-authority models lists it)", cmd, v, model)
		}
		out = append(out, store.GPU{UUID: uuid, Model: m.ID, Registered: since})
	}
	return out, since, nil
}

func cmdNodeRegister(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("node register", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	id := fs.String("id", "", "node id (as in the agent's node.id)")
	provider := fs.String("provider", "", "provider the node belongs to")
	pubB64 := fs.String("public-key", "", "the node's Ed25519 public key (base64, as printed by gpumeter keygen)")
	gf := addGPUFlags(fs)
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id, "provider": *provider, "public-key": *pubB64}) {
		return exitUsage
	}
	gpus, since, err := gf.resolve(fs.Name())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	pub, err := signing.DecodePublicKey(*pubB64)
	if err != nil {
		fmt.Fprintf(stderr, "node register: --public-key: %v\n", err)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		reg := store.Registration{ID: *id, Provider: *provider, Key: pub, GPUs: gpus, Since: since}
		if err := st.RegisterNode(ctx, reg, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered node %s (provider %s) with key %s and %d GPUs\n", *id, *provider, signing.KeyID(pub), len(gpus))
		return nil
	})
}

func cmdNodeAddGPU(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("node add-gpu", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	id := fs.String("id", "", "node id")
	gf := addGPUFlags(fs)
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "id": *id}) {
		return exitUsage
	}
	gpus, _, err := gf.resolve(fs.Name())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		if err := st.AddGPUs(ctx, *id, gpus, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %d GPUs to node %s\n", len(gpus), *id)
		return nil
	})
}

func cmdKeyRotate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("key rotate", flag.ContinueOnError)
	db := fs.String("db", "", dbUsage)
	node := fs.String("node", "", "node id")
	pubB64 := fs.String("public-key", "", "the node's new Ed25519 public key (base64)")
	activeFrom := fs.String("active-from", "", "first instant a window signed by the new key may begin (RFC 3339 or YYYY-MM-DD; default now; set it back to the oldest window still unsent when a node rotates with a backlog)")
	if !parse(fs, args, stderr) || !required(stderr, fs.Name(), map[string]string{"db": *db, "node": *node, "public-key": *pubB64}) {
		return exitUsage
	}
	pub, err := signing.DecodePublicKey(*pubB64)
	if err != nil {
		fmt.Fprintf(stderr, "key rotate: --public-key: %v\n", err)
		return exitUsage
	}
	var from time.Time
	if *activeFrom != "" {
		if from, err = server.ParseBillingTime(*activeFrom); err != nil {
			fmt.Fprintf(stderr, "key rotate: --active-from: %v\n", err)
			return exitUsage
		}
	}
	return withStore(ctx, *db, stderr, func(st *store.Store) error {
		id, err := st.AddKey(ctx, *node, pub, from, time.Now())
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
