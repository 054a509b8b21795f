package main

import (
	"context"
	"crypto/ed25519"
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
func (g *gpuFlags) resolve() ([]store.GPU, time.Time, error) {
	if len(g.gpus) == 0 {
		return nil, time.Time{}, fmt.Errorf("at least one --gpu is required")
	}
	var since time.Time
	if *g.since != "" {
		t, err := server.ParseBillingTime(*g.since)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("--since: %v", err)
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
			return nil, time.Time{}, fmt.Errorf("--gpu %s: no model (give --model or --gpu UUID=MODEL)", v)
		}
		m, found := inventory.Lookup(model)
		if !found {
			return nil, time.Time{}, fmt.Errorf("--gpu %s: model %q is not in the model table (voucher-authority models lists it)", v, model)
		}
		out = append(out, store.GPU{UUID: uuid, Model: m.ID, Registered: since})
	}
	return out, since, nil
}

func nodeRegisterCmd() *cobra.Command {
	d := dbLeaf("register", "register a node: its provider, public key and GPUs")
	id := d.Flags().String("id", "", "node id (as in the agent's node.id)")
	provider := d.Flags().String("provider", "", "provider the node belongs to")
	pubB64 := d.Flags().String("public-key", "", "the node's Ed25519 public key (base64, as printed by gpumeter keygen)")
	gf := addGPUFlags(d.Command)
	required(d.Command, "id", "provider", "public-key")
	var reg store.Registration
	return d.run(withRegistry, func() (err error) {
		reg = store.Registration{ID: *id, Provider: *provider}
		if reg.GPUs, reg.Since, err = gf.resolve(); err != nil {
			return err
		}
		if reg.Key, err = signing.DecodePublicKey(*pubB64); err != nil {
			return fmt.Errorf("--public-key: %v", err)
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.RegisterNode(ctx, reg, time.Now()), stdout, "registered node %s (provider %s) with key %s and %d GPUs\n",
			*id, *provider, signing.KeyID(reg.Key), len(reg.GPUs))
	})
}

func nodeAddGPUCmd() *cobra.Command {
	d := dbLeaf("add-gpu", "add GPUs to a registered node")
	id := d.Flags().String("id", "", "node id")
	gf := addGPUFlags(d.Command)
	required(d.Command, "id")
	var gpus []store.GPU
	return d.run(withRegistry, func() (err error) {
		gpus, _, err = gf.resolve()
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		return done(st.AddGPUs(ctx, *id, gpus, time.Now()), stdout, "added %d GPUs to node %s\n", len(gpus), *id)
	})
}

func keyRotateCmd() *cobra.Command {
	d := dbLeaf("rotate", "add a node's new key; earlier keys stay valid until revoked")
	node := nodeFlag(d)
	pubB64 := d.Flags().String("public-key", "", "the node's new Ed25519 public key (base64)")
	activeFrom := d.Flags().String("active-from", "", "first instant a window signed by the new key may begin (`TIME`; default now; set it back to the oldest window still unsent when a node rotates with a backlog)")
	required(d.Command, "public-key")
	var pub ed25519.PublicKey
	var from time.Time
	return d.run(withRegistry, func() (err error) {
		if pub, err = signing.DecodePublicKey(*pubB64); err != nil {
			return fmt.Errorf("--public-key: %v", err)
		}
		from = time.Time{}
		if *activeFrom != "" {
			if from, err = server.ParseBillingTime(*activeFrom); err != nil {
				return fmt.Errorf("--active-from: %v", err)
			}
		}
		return nil
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		id, err := st.AddKey(ctx, *node, pub, from, time.Now())
		return done(err, stdout, "added key %s to node %s; earlier keys stay valid until revoked\n", id, *node)
	})
}

func keyRevokeCmd() *cobra.Command {
	return idChangeCmd("revoke", "revoke a node key", "key-id", "key id (ed25519:...)", withStore,
		func(ctx context.Context, st *store.Store, keyID string) (string, error) {
			return "revoked key " + keyID, st.RevokeKey(ctx, keyID, time.Now())
		})
}

func usageCmd() *cobra.Command {
	d := dbLeaf("usage", "accepted usage per tenant and node in a period", "json", "table")
	tenant := d.Flags().String("tenant", "", "only this tenant")
	node := d.Flags().String("node", "", "only this node")
	from := d.Flags().String("from", "", "period start (RFC 3339)")
	to := d.Flags().String("to", "", "period end (RFC 3339, exclusive)")
	required(d.Command, "from", "to")
	var filter store.UsageFilter
	return d.run(withStore, func() (err error) {
		filter = store.UsageFilter{Tenant: *tenant, Node: *node}
		filter.From, filter.To, err = server.ParsePeriod(*from, *to)
		return err
	}, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		rows, err := st.Usage(ctx, filter)
		if err != nil {
			return err
		}
		rep := server.NewUsageReport(filter, rows)
		if *d.format == "table" {
			return usageTable(stdout, rep)
		}
		return printJSON(stdout, rep)
	})
}

func headCmd() *cobra.Command {
	d := dbLeaf("head", "a node's chain head, keys' state and GPUs (JSON)")
	node := nodeFlag(d)
	return d.run(withStore, nil, func(ctx context.Context, st *store.Store, stdout io.Writer) error {
		n, err := st.Node(ctx, *node)
		if err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"node": n.ID, "provider": n.Provider, "head": n.HeadSeq, "head_hash": n.HeadHash,
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
