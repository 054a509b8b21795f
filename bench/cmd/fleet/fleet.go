package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/bench/internal/authproc"
	"github.com/gpumeter/gpumeter/bench/internal/procfs"
	"github.com/gpumeter/gpumeter/bench/internal/workload"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/protocol"
)

// fleet is the simulated nodes and the client they share (one keep-alive
// connection per node and authority, as separate machines would have).
type fleet struct {
	// urls are the authorities; with more than one, each request goes to
	// the next in turn (round robin, as a load balancer in front of
	// replicas on one database does), a resend included.
	urls []string
	rr   atomic.Uint64
	pids []int // the authorities', for their CPU (none: not measured)
	// interval is how often each node sends a window in steady load, the
	// nodes' phases spread evenly over it; 0: every node drains at once,
	// sealing its next window as soon as the last was acknowledged.
	interval time.Duration
	client   *http.Client
	nodes    []*node
	tenants  []string
}

// node is one simulated node's chain: what it sealed and what the
// authority acknowledged.
type node struct {
	workload.Node
	sealer  *ledger.Sealer
	base    time.Time // start of its window 0
	next    int       // next window to seal
	nextSeq uint64
	prev    string // hash of the last acknowledged batch
	acked   uint64 // highest seq acknowledged
	batches int    // batches acknowledged
}

// newFleet makes the nodes and registers them (keys, GPUs) in db, as
// `voucher-authority node register` does, through the authority's store.
func newFleet(ctx context.Context, c config, db authproc.Database) (*fleet, error) {
	st, err := store.Open(ctx, db.Driver, db.Source)
	if err != nil {
		return nil, err
	}
	defer func() { _ = st.Close() }()
	now := time.Now().UTC()
	// Windows start 30 days back: far more than a run can seal, and all of
	// them ended long before the authority's now.
	base := now.Truncate(time.Minute).Add(-30 * 24 * time.Hour)
	f := &fleet{
		client: &http.Client{Timeout: c.timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: c.nodes, IdleConnTimeout: time.Minute, DisableCompression: true,
		}},
		tenants: workload.Tenants(c.tenants),
	}
	for i := range c.nodes {
		wn, err := workload.NewNode(i, c.gpus)
		if err != nil {
			return nil, err
		}
		if err := st.RegisterNode(ctx, store.Registration{ID: wn.ID, Provider: workload.Provider, Key: wn.Public(), GPUs: store.GPUsOf("H100-SXM5-80GB", wn.GPUs...), Since: workload.Since}, now); err != nil {
			return nil, err
		}
		s, err := ledger.NewSealer(wn.ID, wn.Key, time.Now)
		if err != nil {
			return nil, err
		}
		f.nodes = append(f.nodes, &node{Node: wn, sealer: s, base: base, nextSeq: 1})
	}
	return f, nil
}

// event is an acknowledgement (records > 0, with the batch's latency from
// sealed to acknowledged) or a resend (records 0) of one node: after a
// 503 with Retry-After (shed) or after a timeout or another failure.
type event struct {
	at      time.Time
	lat     time.Duration
	records int
	shed    bool
}

// phase is what the fleet did in one repetition's window of time.
type phase struct {
	records, batches, retries int
	// shed counts the requests the authority answered 503 with
	// Retry-After (admission control), sent again after it; retries
	// counts the other resends (timeouts, mostly).
	shed      int
	elapsed   time.Duration // the window's length
	latencies []time.Duration
	// Shares of the machine's CPU time over the window, in percent: the
	// authority process, this load generator, idle and waiting for I/O.
	// The rest is PostgreSQL and whatever else runs.
	authorityCPU, generatorCPU, idle, iowait float64
	// authoritySecs is the CPU time the authority processes used in the
	// window, all replicas together.
	authoritySecs float64
}

// nodesPerCore is how many nodes, each sending one window a minute, one
// core of the authority process serves at the CPU this window measured
// per batch: batches per authority CPU-second, times 60 (0: not measured).
func (p phase) nodesPerCore() float64 {
	if p.authoritySecs <= 0 {
		return 0
	}
	return float64(p.batches) * 60 / p.authoritySecs
}

func (p phase) recordsPerSec() float64 { return float64(p.records) / p.elapsed.Seconds() }
func (p phase) batchesPerSec() float64 { return float64(p.batches) / p.elapsed.Seconds() }

// percentile is the q-th percentile of the latencies (nearest rank).
func (p phase) percentile(q int) time.Duration {
	if len(p.latencies) == 0 {
		return 0
	}
	i := (len(p.latencies)*q + 99) / 100
	return p.latencies[max(i, 1)-1]
}

// measure drives the fleet without a pause for warmup + reps x d and cuts
// that time into reps windows of d after the warm-up: a window counts the
// batches acknowledged in it (and their latencies), so every window is
// the same steady state, with no ramp up or down between them. The
// batches in flight at the end are waited for (every batch sent is
// acknowledged when it returns) but not counted.
func (f *fleet) measure(ctx context.Context, warmup, d time.Duration, reps int) ([]phase, error) {
	start := time.Now()
	bounds := make([]time.Time, reps+1)
	for k := range bounds {
		bounds[k] = start.Add(warmup + time.Duration(k)*d)
	}
	// CPU readings at every boundary, taken beside the load.
	readings := make([]cpuTicks, len(bounds))
	sampled := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for k, b := range bounds {
			select {
			case <-sctx.Done():
				sampled <- sctx.Err()
				return
			case <-time.After(time.Until(b)):
			}
			var err error
			if readings[k], err = f.cpu(); err != nil {
				sampled <- err
				return
			}
		}
		sampled <- nil
	}()
	events, err := f.drive(ctx, bounds[reps])
	stop()
	if serr := <-sampled; err == nil && serr != nil && ctx.Err() == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	phases := bucket(events, bounds)
	for k := range phases {
		p := &phases[k]
		m := readings[k+1].machine.Sub(readings[k].machine)
		p.authorityCPU = m.Percent(readings[k+1].authority - readings[k].authority)
		p.generatorCPU = m.Percent(readings[k+1].generator - readings[k].generator)
		p.idle, p.iowait = m.Percent(m.Idle), m.Percent(m.IOWait)
		p.authoritySecs = float64(readings[k+1].authority-readings[k].authority) / userHZ
	}
	return phases, nil
}

// bucket sorts events into the windows between consecutive bounds (equal
// lengths); events before the first or from the last bound on are left out.
func bucket(events []event, bounds []time.Time) []phase {
	phases := make([]phase, len(bounds)-1)
	if len(phases) == 0 {
		return nil
	}
	d := bounds[1].Sub(bounds[0])
	for k := range phases {
		phases[k].elapsed = d
	}
	for _, e := range events {
		if e.at.Before(bounds[0]) || !e.at.Before(bounds[len(bounds)-1]) {
			continue
		}
		p := &phases[min(int(e.at.Sub(bounds[0])/d), len(phases)-1)]
		if e.records == 0 {
			if e.shed {
				p.shed++
			} else {
				p.retries++
			}
			continue
		}
		p.batches++
		p.records += e.records
		p.latencies = append(p.latencies, e.lat)
	}
	for k := range phases {
		slices.Sort(phases[k].latencies)
	}
	return phases
}

// drive runs every node until the deadline: each seals its next window and
// sends it until acknowledged, again and again (at once, or at its phase
// of every f.interval); a node starts no batch after the deadline, so
// every batch sent is acknowledged when drive returns. An answer that is
// neither an acknowledgement nor a transient failure stops the fleet. It
// returns every node's events.
func (f *fleet) drive(ctx context.Context, deadline time.Time) ([]event, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	perNode := make([][]event, len(f.nodes))
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range f.nodes {
		wg.Go(func() {
			for k := 0; ; k++ {
				if f.interval > 0 { // node i's k-th window is due at its phase of the k-th interval
					due := start.Add(f.interval*time.Duration(k) + f.interval*time.Duration(i)/time.Duration(len(f.nodes)))
					select {
					case <-ctx.Done():
					case <-time.After(time.Until(due)):
					}
				}
				if !time.Now().Before(deadline) || ctx.Err() != nil {
					return
				}
				if err := f.oneBatch(ctx, n, &perNode[i]); err != nil {
					cancel(fmt.Errorf("node %s: %w", n.ID, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	var all []event
	for _, es := range perNode {
		all = append(all, es...)
	}
	return all, nil
}

// userHZ is the clock ticks a second that /proc counts CPU time in
// (USER_HZ: 100 on every Linux architecture Go runs on).
const userHZ = 100

// cpuTicks is a reading of the machine's and the processes' CPU time.
type cpuTicks struct {
	machine              procfs.Machine
	authority, generator int64
}

func (f *fleet) cpu() (cpuTicks, error) {
	var c cpuTicks
	var err error
	if c.machine, err = procfs.ReadMachine(); err != nil {
		return c, err
	}
	if c.generator, err = procfs.CPUTicks(os.Getpid()); err != nil {
		return c, err
	}
	for _, pid := range f.pids {
		t, err := procfs.CPUTicks(pid)
		if err != nil {
			return c, err
		}
		c.authority += t
	}
	return c, nil
}

// oneBatch seals n's next window and posts it until the authority
// acknowledges it, appending a resend event per retry and the
// acknowledgement, with its latency from sealed to acknowledged.
func (f *fleet) oneBatch(ctx context.Context, n *node, events *[]event) error {
	start := n.base.Add(time.Duration(n.next) * time.Minute)
	if end := start.Add(time.Minute); end.After(time.Now()) {
		return fmt.Errorf("window %d ends at %s, in the future: the run sealed more windows than the backlog holds", n.next, end)
	}
	recs := n.Window(start, time.Minute, n.next, f.tenants)
	if n.nextSeq == 1 { // a node's chain begins with its inventory
		recs = append([]protocol.Record{n.Inventory(n.base, time.Minute)}, recs...)
	}
	s, err := n.sealer.Seal(ctx, n.nextSeq, n.prev, recs)
	if err != nil {
		return err
	}
	sealed := time.Now()
	for retries := 1; ; retries++ {
		head, wait, err := f.post(ctx, s.Envelope)
		if err == nil {
			if head != s.LastSeq {
				return fmt.Errorf("batch %d..%d acknowledged with head %d", s.FirstSeq, s.LastSeq, head)
			}
			n.next++
			n.nextSeq, n.prev, n.acked = s.LastSeq+1, s.Hash, s.LastSeq
			n.batches++
			now := time.Now()
			*events = append(*events, event{at: now, lat: now.Sub(sealed), records: len(recs)})
			return nil
		}
		if wait < 0 || ctx.Err() != nil {
			return fmt.Errorf("batch %d..%d: %w", s.FirstSeq, s.LastSeq, err)
		}
		*events = append(*events, event{at: time.Now(), shed: wait > 0})
		if wait == 0 {
			wait = backoff(retries)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// backoff is the wait before resend number n of a batch: jittered and
// doubling from the reporter's minimum, so that timed-out nodes do not
// all come back at once.
func backoff(n int) time.Duration {
	d := reporter.DefaultRetryWaitMin << min(n-1, 6)
	return d/2 + rand.N(d/2+1)
}

// post sends one envelope. On failure wait says what the reporter would
// do: < 0 give up (not transient), > 0 send again after that (a 429 or
// 503's Retry-After, spread over [d, 1.5·d] as the reporter does), 0 send
// again after the backoff (network error or timeout, 408, other 5xx).
func (f *fleet) post(ctx context.Context, env []byte) (head uint64, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.next()+"/v1/batches", bytes.NewReader(env))
	if err != nil {
		return 0, -1, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, 0, err
	}
	if s := resp.StatusCode; s != http.StatusOK {
		err := fmt.Errorf("status %d: %s", s, bytes.TrimSpace(body))
		switch {
		case s == http.StatusTooManyRequests || s == http.StatusServiceUnavailable:
			if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 {
				d := time.Duration(secs) * time.Second
				return 0, d + rand.N(d/2+1), err
			}
			return 0, 0, err
		case s == http.StatusRequestTimeout || s >= 500:
			return 0, 0, err
		default:
			return 0, -1, err
		}
	}
	var a struct {
		Head *uint64 `json:"head"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Head == nil {
		return 0, 0, errors.New("200 answer without a head: " + string(body))
	}
	return *a.Head, 0, nil
}

// next is the authority the next request goes to: the only one, or the
// next replica in turn.
func (f *fleet) next() string {
	if len(f.urls) == 1 {
		return f.urls[0]
	}
	return f.urls[(f.rr.Add(1)-1)%uint64(len(f.urls))]
}
