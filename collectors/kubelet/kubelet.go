// Package kubelet asks the kubelet which pod holds which GPU: its
// PodResources API (gRPC, k8s.io/kubelet/pkg/apis/podresources/v1) on the
// node's unix socket, the API the NVIDIA DCGM exporter reads too.
//
// A Source lists the pods at most once per interval, when attribution asks
// (so a simulation in virtual time sees every change on its tick), keeps
// the answer, and turns it into canonical unit UUIDs → containers for the
// namespace rules of collectors/attribution. Only devices of the NVIDIA
// device plugin's resources count: nvidia.com/gpu (whole GPUs, or MIG
// instances with the plugin's "single" strategy), nvidia.com/gpu.shared
// (time-slicing renamed) and nvidia.com/mig-* ("mixed" strategy). Device
// ids are GPU-… or MIG-… UUIDs; a time-slicing replica's "::N" suffix is
// dropped, so replicas of one GPU are holders of that GPU.
//
// When the kubelet cannot be reached (restart, upgrade, socket not
// mounted) the last list stands in for MaxStale, then none: the process
// rules decide. The Source retries at the interval, doubling up to
// MaxBackoff, on a new connection each time, and logs each change of
// state once.
package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/protocol"
)

// Defaults, as the agent's config uses them.
const (
	DefaultSocket     = "/var/lib/kubelet/pod-resources/kubelet.sock"
	DefaultInterval   = 5 * time.Second
	DefaultMaxStale   = 2 * time.Minute
	DefaultTimeout    = 2 * time.Second
	DefaultMaxBackoff = 30 * time.Second
	// maxMessage is what the kubelet's own client accepts (16 MiB).
	maxMessage = 16 << 20
)

// State is the source's connection to the kubelet.
type State int

const (
	// StateConnecting: no answer yet, and no failure.
	StateConnecting State = iota
	// StateUp: the last List succeeded.
	StateUp
	// StateDown: the last List failed.
	StateDown
)

func (s State) String() string {
	return [...]string{"connecting", "up", "down"}[s]
}

// Options configure a Source. Zero Interval lists at every call (a
// simulation); zero MaxStale drops the list at the first failure.
type Options struct {
	Socket     string
	Interval   time.Duration
	MaxStale   time.Duration
	Timeout    time.Duration // per List; DefaultTimeout when 0
	MaxBackoff time.Duration // DefaultMaxBackoff when 0
	Clock      clock.Clock   // clock.Real when nil
	Log        *slog.Logger  // slog.Default when nil
}

// Source is the kubelet's view of which pod holds which device. It is safe
// for concurrent use.
type Source struct {
	opts Options

	mu       sync.Mutex
	conn     *grpc.ClientConn
	state    State
	pods     map[string][]attribution.Pod // nil until a List succeeded
	listedAt time.Time                    // the last successful List
	next     time.Time                    // no List before this
	failures int                          // consecutive failed Lists
	dropped  bool                         // the stale list was dropped (logged)
	lastErr  string
}

// New returns a Source; it connects at the first UnitPods.
func New(opts Options) *Source {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Source{opts: opts}
}

// Socket is the kubelet socket the source reads.
func (s *Source) Socket() string { return s.opts.Socket }

// State is the outcome of the last List.
func (s *Source) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Close drops the connection.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeConn()
}

func (s *Source) closeConn() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// UnitPods lists the pods when the last list is older than the interval
// (or a retry is due) and returns the devices' holders: nil when the
// kubelet has not answered, or not within MaxStale.
func (s *Source) UnitPods(ctx context.Context) map[string][]attribution.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	if !now.Before(s.next) {
		s.refresh(ctx, now)
	}
	if s.pods == nil {
		return nil
	}
	if s.state == StateDown && now.Sub(s.listedAt) > s.opts.MaxStale {
		if !s.dropped {
			s.dropped = true
			s.opts.Log.WarnContext(ctx, "kubelet pod resources: the last list is older than max_stale, dropped: process rules decide until the kubelet answers",
				"socket", s.opts.Socket, "listed_at", s.listedAt.UTC(), "max_stale", s.opts.MaxStale)
		}
		return nil
	}
	return s.pods
}

func (s *Source) refresh(ctx context.Context, now time.Time) {
	pods, err := s.list(ctx)
	if err != nil {
		_ = s.closeConn() // a new connection at the next try: the socket may be new
		s.failures++
		s.next = now.Add(s.backoff())
		msg := err.Error()
		switch {
		case s.state == StateUp:
			s.opts.Log.WarnContext(ctx, "kubelet pod resources unreachable: the last list stands in for max_stale, then process rules decide",
				"socket", s.opts.Socket, "max_stale", s.opts.MaxStale, "err", err)
		case s.state == StateConnecting:
			s.opts.Log.WarnContext(ctx, "kubelet pod resources not reachable: namespace rules match nothing until it is, process rules decide",
				"socket", s.opts.Socket, "err", err)
		case msg != s.lastErr:
			s.opts.Log.DebugContext(ctx, "kubelet pod resources still unreachable", "socket", s.opts.Socket, "err", err)
		}
		s.state, s.lastErr = StateDown, msg
		return
	}
	switch s.state {
	case StateConnecting:
		s.opts.Log.InfoContext(ctx, "kubelet pod resources: attribution by namespace from the kubelet",
			"socket", s.opts.Socket, "devices_held", len(pods))
	case StateDown:
		s.opts.Log.InfoContext(ctx, "kubelet pod resources back", "socket", s.opts.Socket,
			"down_for", now.Sub(s.listedAt).String(), "devices_held", len(pods))
	}
	s.state, s.pods, s.listedAt, s.failures, s.dropped, s.lastErr = StateUp, pods, now, 0, false, ""
	s.next = now.Add(s.opts.Interval)
}

// backoff is the wait before the next try after s.failures failures: the
// interval, doubled per failure after the first, at most MaxBackoff.
func (s *Source) backoff() time.Duration {
	d := s.opts.Interval
	for i := 1; i < s.failures && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackoff)
}

func (s *Source) list(ctx context.Context) (map[string][]attribution.Pod, error) {
	if s.conn == nil {
		socket := s.opts.Socket
		conn, err := grpc.NewClient("passthrough:///kubelet",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)))
		if err != nil {
			return nil, fmt.Errorf("kubelet socket %s: %w", socket, err)
		}
		s.conn = conn
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	resp, err := podresourcesv1.NewPodResourcesListerClient(s.conn).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("kubelet socket %s: List: %w", s.opts.Socket, err)
	}
	return Holders(resp), nil
}

// Holders turns a List answer into canonical unit UUIDs → the containers
// holding them, leaving out resources that are not NVIDIA GPUs and ids
// that are not GPU or MIG UUIDs.
func Holders(resp *podresourcesv1.ListPodResourcesResponse) map[string][]attribution.Pod {
	out := map[string][]attribution.Pod{}
	for _, p := range resp.GetPodResources() {
		for _, c := range p.GetContainers() {
			for _, d := range c.GetDevices() {
				if !GPUResource(d.GetResourceName()) {
					continue
				}
				for _, id := range d.GetDeviceIds() {
					uuid, ok := unitUUID(id)
					if !ok {
						continue
					}
					out[uuid] = append(out[uuid], attribution.Pod{
						Namespace: p.GetNamespace(), Name: p.GetName(), Container: c.GetName()})
				}
			}
		}
	}
	return out
}

// GPUResource reports whether the device plugin resource name is one of
// NVIDIA's GPUs or MIG instances.
func GPUResource(name string) bool {
	return name == "nvidia.com/gpu" || name == "nvidia.com/gpu.shared" ||
		strings.HasPrefix(name, "nvidia.com/mig-")
}

// unitUUID is a device id as a canonical unit UUID, without a
// time-slicing replica suffix ("GPU-…::3").
func unitUUID(id string) (string, bool) {
	if i := strings.Index(id, "::"); i >= 0 {
		id = id[:i]
	}
	canon := protocol.CanonicalGPUUUID
	switch {
	case strings.HasPrefix(id, "MIG-"):
		canon = protocol.CanonicalMIGUUID
	case !strings.HasPrefix(id, "GPU-"):
		return "", false
	}
	u, err := canon(id)
	return u, err == nil
}
