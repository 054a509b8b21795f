package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpumeter/gpumeter/authority/inventory"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// nodeCmd is the node registry: which nodes, keys and GPUs the authority
// accepts records from.
func nodeCmd() *cobra.Command {
	return group("node", "register nodes and their GPUs, move GPUs, clear flags, list them",
		nodeRegisterCmd(), nodeAddGPUCmd(), nodeRemoveGPUCmd(), nodeUnforkCmd(), nodeInstancesCmd(), nodeListCmd())
}

// keyCmd rotates and revokes node keys.
func keyCmd() *cobra.Command {
	return group("key", "rotate and revoke node keys",
		keyRotateCmd(), keyRevokeCmd())
}

// listFlag collects a repeated flag (a pflag.Value).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Type() string   { return "string" }
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

func addGPUFlags(c *cobra.Command) *gpuFlags {
	g := &gpuFlags{}
	c.Flags().Var(&g.gpus, "gpu", "`UUID[=MODEL]` of a GPU the node owns (repeat for each GPU)")
	g.model = c.Flags().String("model", "", "model of every --gpu given without =MODEL: an id or NVML name of the model table (voucher-authority models)")
	g.since = c.Flags().String("since", "", "when the GPUs entered service, as you attest (`TIME`; default now): no window before it is paid")
	required(c, "gpu")
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

func nodeRegisterCmd() *cobra.Command {
	c := leaf("register", "register a node: its provider, public key and GPUs")
	db := dbFlag(c)
	id := c.Flags().String("id", "", "node id (as in the agent's node.id)")
	provider := c.Flags().String("provider", "", "provider the node belongs to")
	pubB64 := c.Flags().String("public-key", "", "the node's Ed25519 public key (base64, as printed by gpumeter keygen)")
	gf := addGPUFlags(c)
	required(c, "id", "provider", "public-key")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		gpus, since, err := gf.resolve("node register")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		pub, err := signing.DecodePublicKey(*pubB64)
		if err != nil {
			fmt.Fprintf(stderr, "node register: --public-key: %v\n", err)
			return exitUsage
		}
		return withRegistry(ctx, *db, stderr, func(st *store.Store) error {
			reg := store.Registration{ID: *id, Provider: *provider, Key: pub, GPUs: gpus, Since: since}
			if err := st.RegisterNode(ctx, reg, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "registered node %s (provider %s) with key %s and %d GPUs\n", *id, *provider, signing.KeyID(pub), len(gpus))
			return nil
		})
	})
}

func nodeAddGPUCmd() *cobra.Command {
	c := leaf("add-gpu", "add GPUs to a registered node")
	db := dbFlag(c)
	id := c.Flags().String("id", "", "node id")
	gf := addGPUFlags(c)
	required(c, "id")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		gpus, _, err := gf.resolve("node add-gpu")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		return withRegistry(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.AddGPUs(ctx, *id, gpus, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added %d GPUs to node %s\n", len(gpus), *id)
			return nil
		})
	})
}

func keyRotateCmd() *cobra.Command {
	c := leaf("rotate", "add a node's new key; earlier keys stay valid until revoked")
	db := dbFlag(c)
	node := c.Flags().String("node", "", "node id")
	pubB64 := c.Flags().String("public-key", "", "the node's new Ed25519 public key (base64)")
	activeFrom := c.Flags().String("active-from", "", "first instant a window signed by the new key may begin (`TIME`; default now; set it back to the oldest window still unsent when a node rotates with a backlog)")
	required(c, "node", "public-key")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
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
		return withRegistry(ctx, *db, stderr, func(st *store.Store) error {
			id, err := st.AddKey(ctx, *node, pub, from, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added key %s to node %s; earlier keys stay valid until revoked\n", id, *node)
			return nil
		})
	})
}

func keyRevokeCmd() *cobra.Command {
	c := leaf("revoke", "revoke a node key")
	db := dbFlag(c)
	keyID := c.Flags().String("key-id", "", "key id (ed25519:...)")
	required(c, "key-id")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		return withStore(ctx, *db, stderr, func(st *store.Store) error {
			if err := st.RevokeKey(ctx, *keyID, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked key %s\n", *keyID)
			return nil
		})
	})
}

func usageCmd() *cobra.Command {
	c := leaf("usage", "accepted usage per tenant and node in a period")
	db := dbFlag(c)
	tenant := c.Flags().String("tenant", "", "only this tenant")
	node := c.Flags().String("node", "", "only this node")
	from := c.Flags().String("from", "", "period start (RFC 3339)")
	to := c.Flags().String("to", "", "period end (RFC 3339, exclusive)")
	format := formatFlag(c, "json", "table")
	required(c, "from", "to")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
		if !checkFormat(stderr, "usage", *format, "json", "table") {
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
			return printJSON(stdout, rep)
		})
	})
}

func headCmd() *cobra.Command {
	c := leaf("head", "a node's chain head, keys' state and GPUs (JSON)")
	db := dbFlag(c)
	node := c.Flags().String("node", "", "node id")
	required(c, "node")
	return action(c, func(ctx context.Context, stdout, stderr io.Writer) int {
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
