// Command gpumeter is the GPU metering agent: it meters GPU time per tenant
// on a node (run), runs the same pipeline over a simulated scenario in
// virtual time (simulate), and validates configuration (check-config).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	promversion "github.com/prometheus/common/version"

	"github.com/gpumeter/gpumeter/agent"
	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/internal/exitcode"
	"github.com/gpumeter/gpumeter/internal/logging"
	"github.com/gpumeter/gpumeter/protocol"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3"
// (packaging/build also sets github.com/prometheus/common/version's
// variables, which build_info and `version` report).
var version = "dev"

// versionText is the `version` output: prometheus/common/version's lines
// (revision, branch, build date, Go version) as node_exporter prints them,
// or the bare version of a build without those -ldflags.
func versionText(program string) string {
	if promversion.Version == "" {
		return program + " " + version
	}
	return promversion.Print(program)
}

const usage = `gpumeter meters GPU time per tenant for compute-voucher programs.

Usage:
  gpumeter run --config FILE                 run the agent daemon
  gpumeter simulate --scenario FILE [flags]  meter a simulated scenario in virtual time
  gpumeter check-config FILE                 validate a config file and exit
  gpumeter devices [--config FILE]           show the GPUs, MIG instances and tenants the agent sees
  gpumeter keygen FILE                       create the node's signing key (0600) and print its public key
  gpumeter version                           print the version

Run 'gpumeter COMMAND -h' for a command's flags.
`

// Exit statuses (internal/exitcode): 0 success, 1 a runtime failure
// (restarting may help), 64 a bad command line, 78 an unusable
// configuration (restarting cannot help: the unit's
// RestartPreventExitStatus names 64 and 78). 2 is never used: the Go
// runtime exits 2 on a panic, and that must be restarted.
const (
	exitOK      = exitcode.OK
	exitFailure = exitcode.Failure
	exitUsage   = exitcode.Usage
	exitConfig  = exitcode.Config
)

func main() {
	if pct, ok := agentGCPercent(os.Args[1:], os.LookupEnv); ok {
		debug.SetGCPercent(pct)
	}
	if n, ok := agentMaxProcs(os.Args[1:], os.LookupEnv); ok {
		runtime.GOMAXPROCS(n)
	}
	// Each command catches SIGTERM and SIGINT itself: run logs the signal
	// through its own logger.
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// agentGCPercent is the garbage collector's target the daemon (run) sets
// when the environment sets none (GOGC): 50 rather than Go's 100. The
// agent's live heap is small (about 2.5 MiB metering a DGX node) and Go's
// smallest heap goal is 4 MiB × GOGC/100, so at 100 the heap grows to 4
// MiB of mostly garbage before its first collection; at 50 it stays near
// 1.5 × the live heap, about 0.7 MiB less resident memory. The price is a
// collection for every half live heap allocated instead of every live
// heap: the agent allocates little per poll, and marking a few MiB takes
// well under a millisecond. A lower target can only make the heap smaller,
// never larger, so it adds no risk of running out of memory. GOGC (and
// GOMEMLIMIT) in the environment still decide: the unit or the operator
// may set them.
func agentGCPercent(args []string, lookupEnv func(string) (string, bool)) (int, bool) {
	return daemonDefault(args, lookupEnv, "GOGC", 50)
}

// daemonDefault is value for the daemon (run) unless the environment sets
// the runtime's own variable env; other commands keep Go's defaults.
func daemonDefault(args []string, lookupEnv func(string) (string, bool), env string, value int) (int, bool) {
	if len(args) == 0 || args[0] != "run" {
		return 0, false
	}
	if _, set := lookupEnv(env); set {
		return 0, false
	}
	return value, true
}

// agentMaxProcs is the number of threads running Go code at once that the
// daemon (run) sets when the environment sets none (GOMAXPROCS): 1. The
// agent's work is one short cycle a poll on one goroutine, a scrape now
// and then, and the reporter's batches; none of it needs two cores, and
// with more than one P every wake-up of the poll loop also wakes an idle
// thread to look for work that is not there (and, on a large node, the
// garbage collector starts a mark worker per P for a heap of a few MiB).
// Measured beside node_exporter, the thread wake-ups were most of the
// agent's CPU between scrapes, and one P cut them by about a third. A
// driver call that blocks (cgo) or a disk write still gives its P to
// other goroutines after at most a sysmon tick, so /metrics and /healthz
// keep answering. GOMAXPROCS in the environment still decides.
func agentMaxProcs(args []string, lookupEnv func(string) (string, bool)) (int, bool) {
	return daemonDefault(args, lookupEnv, "GOMAXPROCS", 1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "simulate":
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return cmdSimulate(ctx, args[1:], stdout, stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr)
	case "keygen":
		return cmdKeygen(args[1:], stdout, stderr)
	case "devices":
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return cmdDevices(ctx, args[1:], stdout, stderr)
	case "spool":
		return cmdSpool(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionText("gpumeter"))
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "gpumeter: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (or give it as the argument)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	if *path == "" || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: gpumeter check-config FILE")
		return exitUsage
	}
	_, warnings, err := loadChecked(*path)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	fmt.Fprintf(stdout, "%s: OK\n", *path)
	return exitOK
}

// loadChecked loads the config at path and runs preflight on it: the
// checks check-config and run share.
func loadChecked(path string) (*config.Config, []string, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	warnings, err := preflight(cfg)
	return cfg, warnings, err
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) int {
	// SIGHUP reloads the config (systemd: ExecReload=/bin/kill -HUP
	// $MAINPID). Caught from the start: its default action would kill the
	// agent, and one that arrives while it starts is served once it runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/gpumeter/agent.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gpumeter run [--config FILE]")
		return exitUsage
	}
	// Everything check-config checks, before anything starts: a config
	// that cannot work exits 78 here, which systemd does not restart.
	cfg, warnings, err := loadChecked(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	level := new(slog.LevelVar)
	if l, err := logging.ParseLevel(cfg.Log.Level); err == nil { // config.Load has validated it
		level.Set(l)
	}
	log := logging.New(stderr, cfg.Log.Format, level)
	for _, w := range warnings {
		log.Warn(w)
	}
	ctx, stop := logging.NotifyContext(ctx, log, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := agent.New(cfg, log, version, agent.WithLogLevel(level))
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitFailure
	}
	reloadCtx, stopReloads := context.WithCancel(ctx)
	reloading := make(chan struct{})
	go func() {
		defer close(reloading)
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reloading the config", "file", cfg.Path())
				_ = d.Reload(reloadCtx) // the daemon logs the outcome
			case <-reloadCtx.Done():
				return
			}
		}
	}()
	err = d.Run(ctx)
	stopReloads()
	<-reloading
	if err != nil {
		log.Error("stopped on error", "err", err)
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("scenario", "", "scenario file (YAML)")
	duration := fs.Duration("duration", 0, "virtual time to meter (default: the scenario's duration)")
	window := fs.Duration("window", time.Minute, "metering window")
	format := fs.String("format", "json", "output: json (one record per line, inventory records included) or summary (per-tenant table)")
	node := fs.String("node", "sim-node", "node id written into records")
	provider := fs.String("provider", "sim-provider", "provider written into records")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gpumeter simulate --scenario FILE [--duration D] [--format json|summary]")
		return exitUsage
	}
	if *format != "json" && *format != "summary" {
		fmt.Fprintf(stderr, "gpumeter simulate: --format %q: want json or summary\n", *format)
		return exitUsage
	}
	sc, err := scenario.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	enc := json.NewEncoder(stdout)
	sum := newSummary()
	opts := agent.SimOptions{Node: *node, Provider: *provider, Duration: *duration, Window: *window, Agent: version,
		Emit: func(recs []protocol.Record) error {
			for i := range recs {
				if *format == "json" {
					if err := enc.Encode(&recs[i]); err != nil {
						return err
					}
				} else {
					sum.add(&recs[i])
				}
			}
			return nil
		}}
	if err := agent.Simulate(ctx, sc, opts); err != nil {
		fmt.Fprintln(stderr, "gpumeter simulate:", err)
		return exitFailure
	}
	if *format == "summary" {
		sum.print(stdout)
	}
	return exitOK
}

// summary totals records per tenant and per kind. A MIG instance's time
// counts by its share of the GPU (slice_num/slice_den), as the authority
// weighs it, so that GPU-hours of whole GPUs and of MIG instances add up;
// the instances' own time is totalled apart, as instance-hours.
type summary struct {
	tenant map[string]*summaryRow
	kind   map[protocol.Kind]*summaryRow
	n      int
}

// summaryRow is one line: GPU time in 1/sliceScale ms (exact for every
// slice denominator from 1 to 10; MIG GPUs have 7 or 8 slices), and MIG
// instance time in ms.
type summaryRow struct {
	scaled, instanceMs int64
}

const sliceScale = 2520

func newSummary() *summary {
	return &summary{tenant: map[string]*summaryRow{}, kind: map[protocol.Kind]*summaryRow{}}
}

func (s *summary) add(r *protocol.Record) {
	if r.Kind == protocol.KindInventory {
		return // no GPU time: not a row of the table, nor a record counted
	}
	s.n++
	rows := []*summaryRow{rowOf(s.kind, r.Kind)}
	if r.Kind == protocol.KindUsage {
		rows = append(rows, rowOf(s.tenant, r.Tenant))
	}
	num, den := int64(r.SliceNum), int64(r.SliceDen)
	if den <= 0 {
		num, den = 1, 1
	}
	for _, row := range rows {
		row.scaled += r.GPUMillis * (sliceScale * num / den)
		if r.MIGProfile != "" {
			row.instanceMs += r.GPUMillis
		}
	}
}

func rowOf[K comparable](m map[K]*summaryRow, k K) *summaryRow {
	if m[k] == nil {
		m[k] = &summaryRow{}
	}
	return m[k]
}

func (s *summary) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tenant\tGPU-ms\tGPU-hours\tMIG instance-hours\t")
	line := func(name string, r *summaryRow) {
		if r == nil {
			r = &summaryRow{}
		}
		ms := r.scaled / sliceScale // truncated, as FormatHours
		inst := "-"
		if r.instanceMs > 0 {
			inst = protocol.FormatHours(r.instanceMs)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", name, ms, protocol.FormatHours(ms), inst)
	}
	names := make([]string, 0, len(s.tenant))
	for t := range s.tenant {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		line(t, s.tenant[t])
	}
	for _, k := range []protocol.Kind{protocol.KindIdle, protocol.KindGap} {
		line("("+string(k)+")", s.kind[k])
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d records\n", s.n)
	for _, r := range s.kind {
		if r.instanceMs > 0 {
			fmt.Fprintln(w, "GPU-ms and GPU-hours count a MIG instance's time by its share of the GPU (slices/total);\n"+
				"MIG instance-hours count the instances' own time, each instance hour as one.")
			break
		}
	}
}
