package agent

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/kubelet"
	"github.com/gpumeter/gpumeter/collectors/sim/scenario"
	"github.com/gpumeter/gpumeter/collectors/sim/simkubelet"
	"github.com/gpumeter/gpumeter/internal/clock"
)

// hasNamespaceRules reports whether any rule asks the kubelet.
func hasNamespaceRules(rules []attribution.Rule) bool {
	for _, r := range rules {
		if r.Namespace != "" {
			return true
		}
	}
	return false
}

// openPods makes the kubelet source namespace rules read. It connects at
// the first poll, and only when a rule matches on namespace, so a node
// without Kubernetes never dials; made at start whatever the rules, a
// reload may add namespace rules. socket overrides the config's (the
// simulated kubelet's).
func openPods(cfg *config.Config, clk clock.Clock, socket string, log *slog.Logger) *kubelet.Source {
	k := cfg.Attribution.Kubelet
	if socket == "" {
		socket = k.Socket
	}
	if hasNamespaceRules(cfg.Attribution.Rules) {
		log.Info("attribution source: the kubelet's PodResources API for namespace rules, then process rules (cgroup, user)",
			"socket", socket, "interval", k.Interval.String(), "max_stale", k.MaxStale.String())
	} else {
		log.Info("attribution source: process rules (cgroup, user); no namespace rule, the kubelet is not asked")
	}
	return kubelet.New(kubelet.Options{Socket: socket, Interval: k.Interval, MaxStale: k.MaxStale,
		Timeout: k.Timeout, Clock: clk, Log: log})
}

// watchKubelet exports the kubelet source's state when the agent starts
// with namespace rules (a node without them has no kubelet to watch).
func (m *Metrics) watchKubelet(src *kubelet.Source) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gpumeter_kubelet_up",
		Help: "Whether the kubelet's PodResources API answered the last List (1) or not (0); namespace rules use its last list for attribution.kubelet.max_stale.",
	}, func() float64 {
		if src.State() == kubelet.StateUp {
			return 1
		}
		return 0
	}))
}

// simKubelet serves a scenario's pods as a kubelet would, over the real
// PodResources protocol, on a socket in the simulated host root.
type simKubelet struct {
	srv *simkubelet.Server
	sc  *scenario.Scenario
}

// startSimKubelet starts one when the scenario has pods or kubelet
// outages; nil otherwise.
func startSimKubelet(sc *scenario.Scenario, root string) (*simKubelet, error) {
	if !sc.HasKubelet() {
		return nil, nil
	}
	srv, err := simkubelet.Start(filepath.Join(root, "kubelet.sock"))
	if err != nil {
		return nil, err
	}
	return &simKubelet{srv: srv, sc: sc}, nil
}

// socket is where it serves ("" without one).
func (k *simKubelet) socket() string {
	if k == nil {
		return ""
	}
	return k.srv.Socket()
}

// sync brings the kubelet to the scenario's state at t: the pods holding
// units, and whether its socket is there. The driver must be applied at t.
func (k *simKubelet) sync(drv *scenario.Driver, t time.Time) error {
	if k == nil {
		return nil
	}
	if !k.sc.KubeletUp(t) {
		k.srv.Down()
		return nil
	}
	var allocs []simkubelet.Alloc
	for _, p := range drv.Pods(t) {
		allocs = append(allocs, simkubelet.Alloc{Namespace: p.Namespace, Pod: p.Pod, Container: p.Container,
			Resource: p.Resource, DeviceIDs: []string{p.DeviceID}})
	}
	k.srv.Set(allocs)
	return k.srv.Up()
}

func (k *simKubelet) stop() {
	if k != nil {
		k.srv.Stop()
	}
}

// attributionOptions are the options every Attributor of the daemon gets.
// watcher is the simulator's process watcher on a simulated node; nil
// leaves attribution its default (pidfds where the host's /proc is the
// agent's own).
func attributionOptions(log *slog.Logger, pods *kubelet.Source, squeue string, watcher attribution.ProcessWatcher) []attribution.Option {
	opts := []attribution.Option{attribution.WithLogger(log), attribution.WithPods(pods), attribution.WithSqueue(squeue)}
	if watcher != nil {
		opts = append(opts, attribution.WithProcessWatcher(watcher))
	}
	return opts
}

var _ attribution.ProcessWatcher = scenario.ProcessWatcher{}

var _ attribution.Pods = (*kubelet.Source)(nil)
