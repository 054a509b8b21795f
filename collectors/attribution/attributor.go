package attribution

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// Split rules, as carried in Observation.SplitRule.
const (
	SplitUtilization = "utilization"
	SplitEqual       = "equal"
)

// Attributor turns device snapshots into observations. Build a new one to
// change rules: it holds no state worth keeping beyond its cache.
//
// Attribute may be called from several goroutines; calls are serialized
// (the agent polls from one goroutine, so this costs nothing).
type Attributor struct {
	static []*compiledRule // gpu rules, in config order
	rules  []*compiledRule // process rules, in config order
	// podRules are the namespace rules, in config order; pods says which
	// pods hold which units (nil: namespace rules match nothing).
	podRules []*compiledRule
	pods     Pods
	proc     hostProc
	log      *slog.Logger
	squeue   string // default command of slurm rules (WithSqueue)

	mu    sync.Mutex
	users passwd
	cache map[uint32]cacheEntry
	gen   uint64   // Attribute calls so far: marks cache entries as seen
	vals  []string // scratch for a matcher's group values
	// ruleOf and which are shares' scratch (arena.go).
	ruleOf, which []int
	// refused are the templated tenants already logged as invalid.
	refused     map[refusedKey]bool
	refusedFull bool
	// watcher follows resolved processes (watch.go); nil: start times.
	watcher    ProcessWatcher
	watcherSet bool
	watch      watchState
}

// cacheEntry is a process's attribution, valid while the PID keeps the
// same start time.
type cacheEntry struct {
	start  int64
	tenant string
	method string
	rule   int // index in Config.Rules, len(Rules) for unattributed
	seen   uint64
	// watched: the watcher follows the process with handle; live is the
	// Attribute call in which it last said the process is still there.
	watched bool
	handle  int
	live    uint64
}

// Option configures an Attributor.
type Option func(*Attributor)

// WithLogger sets the logger (default: slog.Default() at New).
func WithLogger(l *slog.Logger) Option { return func(a *Attributor) { a.log = l } }

// New validates cfg and returns an Attributor reading processes from
// <hostRoot>/proc and users from <hostRoot>/etc/passwd. hostRoot is "/" on
// a node; the simulator and tests pass a fake tree.
func New(cfg Config, hostRoot string, opts ...Option) (*Attributor, error) {
	fi, err := os.Stat(hostRoot)
	if err != nil {
		return nil, fmt.Errorf("attribution host root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("attribution host root %s: not a directory", hostRoot)
	}
	a := &Attributor{
		proc:    newHostProc(hostRoot),
		log:     slog.Default(),
		users:   passwd{path: filepath.Join(hostRoot, "etc", "passwd")},
		cache:   map[uint32]cacheEntry{},
		refused: map[refusedKey]bool{},
		squeue:  defaultSqueue,
	}
	for _, o := range opts {
		o(a)
	}
	a.defaultWatcher(hostRoot)
	maxGroups := len(userGroups)
	for i, r := range cfg.Rules {
		c, err := compileRule(r, i)
		if err != nil {
			return nil, err
		}
		switch c.kind {
		case kindGPU:
			a.static = append(a.static, c)
			continue
		case kindPod:
			a.podRules = append(a.podRules, c)
			maxGroups = max(maxGroups, len(podGroups))
			continue
		}
		a.rules = append(a.rules, c)
		if sm, ok := c.paths.(*slurmMatcher); ok {
			sm.prepare(c.tenant, a.squeue, a.log)
		}
		if c.paths != nil {
			maxGroups = max(maxGroups, len(c.paths.groups()))
		}
	}
	a.vals = make([]string, maxGroups)
	return a, nil
}

// Attribute attributes every unit of s, in s.Units() order. It never fails:
// a process it cannot read is metered as Unattributed.
func (a *Attributor) Attribute(ctx context.Context, s device.Snapshot) []Observation {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	ctx = a.proc.withEnv(ctx)
	a.checkWatched(ctx)
	units := s.Units()
	var alloc map[string][]Pod
	if a.pods != nil && len(a.podRules) > 0 {
		alloc = a.pods.UnitPods(ctx) // once per snapshot: it may ask the kubelet
	}
	obs := make([]Observation, len(units))
	ar := newArena(units)
	for i, u := range units {
		obs[i].Unit = u
		if u.Err != nil || len(u.Processes) == 0 {
			continue // a gap (Lost) or idle: no shares
		}
		if r := a.staticRule(u); r != nil {
			obs[i].Shares = []Share{{
				Tenant: r.tenant.expand(nil), Method: r.method, Weight: 1,
				PIDs: ar.sortedPIDs(u.Processes),
			}}
			continue
		}
		if r, tenant, ok := a.podTenant(ctx, alloc, u); ok {
			obs[i].Shares = []Share{{Tenant: tenant, Method: r.method, Weight: 1, PIDs: ar.sortedPIDs(u.Processes)}}
			continue
		}
		obs[i].Shares, obs[i].SplitRule = a.shares(ctx, u, ar)
	}
	// Bounded memory: forget processes not in this snapshot. A process that
	// comes back is resolved afresh, which is also right after PID reuse.
	for pid, e := range a.cache {
		if e.seen != a.gen {
			a.forget(pid)
		}
	}
	return obs
}

// staticRule is the first gpu rule naming the unit or its physical GPU.
func (a *Attributor) staticRule(u device.Unit) *compiledRule {
	for _, r := range a.static {
		if r.gpu == u.UUID || r.gpu == u.ParentUUID {
			return r
		}
	}
	return nil
}

// shares groups the unit's processes by tenant and weighs them (the
// contract is on Share.Weight).
func (a *Attributor) shares(ctx context.Context, u device.Unit, ar *arena) ([]Share, string) {
	// Weights are the processes' SM samples (device.Process.SMWeight): a
	// process without samples adds nothing, and does not turn the others'
	// samples into an equal split. Only when no process has a non-zero
	// sample is the split equal.
	useUtil := false
	for _, p := range u.Processes {
		if p.SMWeight > 0 {
			useUtil = true
		}
	}

	shares := ar.shares(len(u.Processes))
	ruleOf := a.ruleOf[:0] // per share: the highest-priority rule among its processes
	which := a.which[:0]   // per process: its share
	for _, p := range u.Processes {
		e := a.resolve(ctx, u, p.PID)
		i := slices.IndexFunc(shares, func(s Share) bool { return s.Tenant == e.tenant })
		if i < 0 {
			shares = append(shares, Share{Tenant: e.tenant, Method: e.method})
			ruleOf = append(ruleOf, e.rule)
			i = len(shares) - 1
		} else if e.rule < ruleOf[i] {
			shares[i].Method, ruleOf[i] = e.method, e.rule
		}
		which = append(which, i)
		if useUtil {
			shares[i].Weight += p.SMWeight
		}
	}
	ar.groupPIDs(shares, which, u.Processes)
	a.ruleOf, a.which = ruleOf, which
	split := ""
	switch {
	case len(shares) == 1:
	case useUtil:
		split = SplitUtilization
	default:
		split = SplitEqual
	}
	for i := range shares {
		// A tenant whose processes all sampled 0% still holds the unit: it
		// keeps a minimal part rather than none (Weight >= 1 always).
		if split != SplitUtilization || shares[i].Weight < 1 {
			shares[i].Weight = 1
		}
		slices.Sort(shares[i].PIDs)
	}
	slices.SortFunc(shares, func(x, y Share) int { return cmp.Compare(x.Tenant, y.Tenant) })
	return shares, split
}

// resolve attributes one process, from the cache when the watcher says it
// is still there (watch.go) or, unwatched, when the PID still has the start
// time it had when it was resolved.
func (a *Attributor) resolve(ctx context.Context, u device.Unit, pid uint32) cacheEntry {
	unattributed := cacheEntry{
		tenant: Unattributed, method: string(MethodUnattributed), rule: len(a.static) + len(a.rules),
	}
	e, cached := a.cache[pid]
	if cached && e.seen == a.gen {
		return e // already checked in this snapshot (a process on two units)
	}
	if cached && e.watched && e.live == a.gen {
		e.seen = a.gen // the watcher saw it alive: no /proc read
		a.cache[pid] = e
		return e
	}
	handle, watched := 0, false
	if !cached {
		handle, watched = a.watchNew(ctx, pid)
	}
	start, err := a.proc.startTime(ctx, pid)
	if err != nil {
		a.forget(pid)
		a.unwatch(handle, watched)
		a.logUnreadable(ctx, u, pid, err)
		return unattributed
	}
	if cached && e.start == start {
		e.seen = a.gen
		a.cache[pid] = e
		return e
	}
	if cached {
		a.log.DebugContext(ctx, "pid reused, attributing afresh", "pid", pid,
			"old_start_ticks", e.start, "start_ticks", start, "old_tenant", e.tenant)
		a.forget(pid)
	}
	e, err = a.match(ctx, pid)
	if err != nil {
		a.unwatch(handle, watched)
		a.logUnreadable(ctx, u, pid, err)
		return unattributed
	}
	e.start, e.seen = start, a.gen
	if e.method == string(MethodUnattributed) {
		// Not cached: a match is final for the process's life (its cgroup
		// is set before it execs), but no match may be transient (a user
		// added to /etc/passwd), so it is tried again at the next call.
		a.unwatch(handle, watched)
		return e
	}
	if watched && !a.stillThere(handle) {
		// It exited while it was read: what was read may be a later
		// process's. Attributed for this poll, not kept.
		a.unwatch(handle, watched)
		return e
	}
	e.watched, e.handle, e.live = watched, handle, a.gen
	a.cache[pid] = e
	return e
}

func (a *Attributor) logUnreadable(ctx context.Context, u device.Unit, pid uint32, err error) {
	if gone(err) {
		a.log.DebugContext(ctx, "process exited before attribution, metered as unattributed",
			"pid", pid, "unit", u.String(), "err", err)
		return
	}
	a.log.WarnContext(ctx, "cannot read process, metered as unattributed",
		"pid", pid, "unit", u.String(), "err", err)
}

// match runs the process rules in order. It reads /proc only as far as the
// rules need: cgroup paths for cgroup rules, uids for user rules.
func (a *Attributor) match(ctx context.Context, pid uint32) (cacheEntry, error) {
	var paths []string
	pathsRead, uidRead := false, false
	var uid uint32
	for _, r := range a.rules {
		var tenant string
		switch r.kind {
		case kindCgroup:
			if !pathsRead {
				var err error
				if paths, err = a.proc.cgroupPaths(pid); err != nil {
					return cacheEntry{}, err
				}
				pathsRead = true
			}
			vals := a.vals[:len(r.paths.groups())]
			for _, p := range paths {
				if r.paths.match(p, vals) {
					if tenant = r.tenant.expand(vals); tenant != "" {
						break
					}
				}
			}
		case kindUser, kindUID:
			if !uidRead {
				var err error
				if uid, err = a.proc.uid(ctx, pid); err != nil {
					return cacheEntry{}, err
				}
				uidRead = true
			}
			tenant = a.matchUser(ctx, r, uid)
		}
		if tenant == "" {
			continue
		}
		if err := checkTenant(tenant); err != nil {
			// The rule claims the process, but with a name no record may
			// carry: metered, as unattributed, rather than refused later.
			a.logRefused(ctx, r, tenant, err)
			break
		}
		a.log.DebugContext(ctx, "process attributed", "pid", pid, "tenant", tenant,
			"method", r.method, "rule", r.index, "rule_name", r.name)
		return cacheEntry{tenant: tenant, method: r.method, rule: r.index}, nil
	}
	return cacheEntry{
		tenant: Unattributed, method: string(MethodUnattributed), rule: len(a.static) + len(a.rules),
	}, nil
}

// matchUser returns the tenant of a user or uid rule for a process of uid,
// or "" when the rule does not match.
func (a *Attributor) matchUser(ctx context.Context, r *compiledRule, uid uint32) string {
	a.refreshUsers(ctx)
	name := ""
	switch r.kind {
	case kindUser:
		want, ok := a.users.byName[r.user]
		if !ok || want != uid {
			return ""
		}
		name = r.user
	case kindUID:
		if r.uid != uid {
			return ""
		}
		var ok bool
		if name, ok = a.users.byUID[uid]; !ok {
			name = strconv.FormatUint(uint64(uid), 10) // not in passwd (LDAP, containers)
		}
	}
	vals := a.vals[:len(userGroups)]
	vals[0], vals[1] = name, strconv.FormatUint(uint64(uid), 10)
	return r.tenant.expand(vals)
}

// refreshUsers checks /etc/passwd for changes at most once per Attribute
// call, and logs a failure once until it changes.
func (a *Attributor) refreshUsers(ctx context.Context) {
	if a.users.checked == a.gen {
		return
	}
	a.users.checked = a.gen
	err := a.users.refresh()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != a.users.lastErr {
		a.users.lastErr = msg
		if err != nil {
			a.log.WarnContext(ctx, "user rules use the last readable passwd (none: they match nothing)", "err", err)
		}
	}
}
