package attribution

import (
	"regexp"
	"strings"
)

// pathMatcher matches one cgroup path (the third field of a line of
// /proc/<pid>/cgroup) and extracts named values from it.
type pathMatcher interface {
	// groups names the values match extracts, in the order of vals.
	groups() []string
	// match reports whether path matches and, if so, fills vals
	// (len(groups())); a group the path does not carry is "".
	match(path string, vals []string) bool
}

// presetNames lists the presets, for errors and docs.
func presetNames() []string {
	return []string{"kubernetes", "slurm", "docker", "containerd", "systemd"}
}

// lookupPreset builds the matcher of a preset. Presets are unanchored at
// the start (a path component boundary is enough) so that they also match
// paths seen from inside a cgroup namespace or below a custom parent.
func lookupPreset(name string) (pathMatcher, bool) {
	switch name {
	case "kubernetes":
		return kubernetesMatcher(newRegexMatcher(nil, []*regexp.Regexp{
			// cgroupfs driver (kubelet --cgroup-driver=cgroupfs), v1 and v2:
			//   /kubepods/burstable/pod3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41/<64 hex>
			//   /kubepods/besteffort/pod3f1c2a4e-.../crio-<64 hex>      (CRI-O)
			//   /kubepods/pod3f1c2a4e-.../<64 hex>                       (Guaranteed: no QoS level)
			regexp.MustCompile(`(?:^|/)kubepods/(?:(?P<qos>burstable|besteffort)/)?` +
				`pod(?P<pod_uid>[0-9a-fA-F][0-9a-fA-F_-]*)` +
				`(?:/(?:(?:cri-containerd|crio|docker)-)?(?P<container_id>[0-9a-f]{64})(?:\.scope)?)?(?:/|$)`),
			// systemd driver: the pod slice's name carries the QoS class and
			// the pod UID with '_' for '-' (systemd reserves '-' for nesting):
			//   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_8c1b_4a57_9f1e_2b8d7c6a5e41.slice/cri-containerd-<64 hex>.scope
			//   /kubepods.slice/kubepods-pod3f1c2a4e_....slice/crio-<64 hex>.scope            (Guaranteed)
			//   /kubelet.slice/kubelet-kubepods.slice/.../kubelet-kubepods-besteffort-pod<uid>.slice/... (kind)
			regexp.MustCompile(`(?:^|/)(?:kubelet-)?kubepods(?:-(?P<qos>burstable|besteffort))?` +
				`-pod(?P<pod_uid>[0-9a-fA-F][0-9a-fA-F_]*)\.slice` +
				`(?:/(?:cri-containerd|crio|docker)-(?P<container_id>[0-9a-f]{64})\.scope)?(?:/|$)`),
		})), true
	case "slurm":
		return newRegexMatcher(nil, []*regexp.Regexp{
			// cgroup v2 (cgroup/v2 plugin, Slurm >= 22.05); "<node>_slurmstepd.scope"
			// when several slurmd run on one host:
			//   /system.slice/slurmstepd.scope/job_4242/step_0/user/task_0
			//   /system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0
			regexp.MustCompile(`(?:^|/)(?:[^/]*_)?slurmstepd\.scope/job_(?P<job>[0-9]+)` +
				`(?:/step_(?P<step>[^/]+))?(?:/|$)`),
			// cgroup v1 (cgroup/v1 plugin), in every controller's hierarchy:
			//   /slurm/uid_1000/job_77/step_batch/task_0
			//   /slurm_node07/uid_1000/job_77/step_0/task_1
			regexp.MustCompile(`(?:^|/)slurm(?:_[^/]+)?/uid_(?P<uid>[0-9]+)/job_(?P<job>[0-9]+)` +
				`(?:/step_(?P<step>[^/]+))?(?:/|$)`),
		}), true
	case "docker":
		return newRegexMatcher(nil, []*regexp.Regexp{
			// cgroupfs driver: /docker/<64 hex>
			regexp.MustCompile(`(?:^|/)docker/(?P<container_id>[0-9a-f]{64})(?:/|$)`),
			// systemd driver: /system.slice/docker-<64 hex>.scope
			regexp.MustCompile(`(?:^|/)docker-(?P<container_id>[0-9a-f]{64})\.scope(?:/|$)`),
		}), true
	case "containerd":
		return newRegexMatcher(nil, []*regexp.Regexp{
			// CRI plugin, systemd driver (usually below a Kubernetes pod slice):
			//   /kubepods.slice/.../cri-containerd-<64 hex>.scope
			regexp.MustCompile(`(?:^|/)cri-containerd-(?P<container_id>[0-9a-f]{64})\.scope(?:/|$)`),
			// CRI plugin given a systemd-style cgroupsPath without the systemd driver:
			//   /system.slice/containerd.service/kubepods-besteffort-pod<uid>.slice:cri-containerd:<64 hex>
			regexp.MustCompile(`:cri-containerd:(?P<container_id>[0-9a-f]{64})(?:/|$)`),
			// nerdctl, systemd driver: /system.slice/nerdctl-<64 hex>.scope
			regexp.MustCompile(`(?:^|/)nerdctl-(?P<container_id>[0-9a-f]{64})\.scope(?:/|$)`),
			// cgroupfs parents named after the containerd namespace or daemon:
			//   /default/<64 hex>   (nerdctl, ctr)
			//   /containerd/<64 hex>
			regexp.MustCompile(`(?:^|/)(?:containerd|default)/(?P<container_id>[0-9a-f]{64})(?:/|$)`),
		}), true
	case "systemd":
		return systemdMatcher{}, true
	}
	return nil, false
}

// kubernetesMatcher turns the systemd driver's pod UID back into the API's
// form and names the QoS class that has no cgroup level.
func kubernetesMatcher(m *regexMatcher) *regexMatcher {
	qos, uid := m.index("qos"), m.index("pod_uid")
	m.normalize = func(vals []string) {
		if vals[qos] == "" {
			vals[qos] = "guaranteed"
		}
		if strings.IndexByte(vals[uid], '_') >= 0 {
			vals[uid] = strings.ReplaceAll(vals[uid], "_", "-")
		}
	}
	return m
}

// regexMatcher tries its regexps in order; the first that matches fills the
// values. Groups are the union of the regexps' named groups, so regexps
// for two layouts of one preset can share group names.
type regexMatcher struct {
	res   []*regexp.Regexp
	names []string
	// sub[r][g] lists the submatch indexes of names[g] in res[r]; Go allows
	// one name twice in a regexp (in alternatives), the first that took
	// part in the match gives the value.
	sub       [][][]int
	normalize func(vals []string)
}

func newRegexMatcher(normalize func([]string), res []*regexp.Regexp) *regexMatcher {
	m := &regexMatcher{res: res, normalize: normalize}
	pos := map[string]int{}
	for _, re := range res {
		for _, n := range re.SubexpNames() {
			if _, ok := pos[n]; n != "" && !ok {
				pos[n] = len(m.names)
				m.names = append(m.names, n)
			}
		}
	}
	m.sub = make([][][]int, len(res))
	for r, re := range res {
		m.sub[r] = make([][]int, len(m.names))
		for i, n := range re.SubexpNames() {
			if n != "" {
				g := pos[n]
				m.sub[r][g] = append(m.sub[r][g], i)
			}
		}
	}
	return m
}

func (m *regexMatcher) groups() []string { return m.names }

// index is the position of a group in groups(), -1 if absent.
func (m *regexMatcher) index(name string) int {
	for i, n := range m.names {
		if n == name {
			return i
		}
	}
	return -1
}

func (m *regexMatcher) match(path string, vals []string) bool {
	for r, re := range m.res {
		loc := re.FindStringSubmatchIndex(path)
		if loc == nil {
			continue
		}
		for g := range vals {
			vals[g] = ""
			for _, i := range m.sub[r][g] {
				if loc[2*i] >= 0 {
					vals[g] = path[loc[2*i]:loc[2*i+1]]
					break
				}
			}
		}
		if m.normalize != nil {
			m.normalize(vals)
		}
		return true
	}
	return false
}

// systemdMatcher finds the deepest systemd unit in a path:
//
//	/system.slice/train.service                      unit=train.service slice=system.slice slice_leaf=system
//	/tenant.slice/tenant-acme.slice/job42.service    unit=job42.service slice=tenant-acme.slice slice_leaf=acme
//	/system.slice/system-train.slice/train@acme.service  unit=train@acme.service instance=acme
//	/user.slice/user-1000.slice/session-3.scope      unit=session-3.scope slice=user-1000.slice slice_leaf=1000
//	/init.scope                                      unit=init.scope slice=-.slice slice_leaf=""
//
// Components below the unit (e.g. slurmstepd.scope/job_1/step_0) are
// ignored. A path without any unit ("/", "/kubepods/...") does not match.
type systemdMatcher struct{}

var systemdGroups = []string{"unit", "instance", "slice", "slice_leaf"}

func (systemdMatcher) groups() []string { return systemdGroups }

func (systemdMatcher) match(path string, vals []string) bool {
	comps := strings.Split(strings.Trim(path, "/"), "/")
	leaf := -1
	for i := len(comps) - 1; i >= 0; i-- {
		if unitSuffix(comps[i]) != "" {
			leaf = i
			break
		}
	}
	if leaf < 0 {
		return false
	}
	unit := comps[leaf]
	slice := "-.slice" // the root slice holds what no other slice does
	for i := leaf; i >= 0; i-- {
		if unitSuffix(comps[i]) == ".slice" {
			slice = comps[i]
			break
		}
	}
	base := strings.TrimSuffix(unit, unitSuffix(unit))
	instance := ""
	if at := strings.IndexByte(base, '@'); at >= 0 {
		instance = base[at+1:]
	}
	sliceBase := strings.TrimSuffix(slice, ".slice")
	vals[0], vals[1], vals[2] = unit, instance, slice
	vals[3] = sliceBase[strings.LastIndexByte(sliceBase, '-')+1:]
	return true
}

// unitSuffix returns the unit type suffix of a cgroup directory name that
// systemd manages, or "".
func unitSuffix(name string) string {
	for _, s := range []string{".service", ".scope", ".slice"} {
		if len(name) > len(s) && strings.HasSuffix(name, s) {
			return s
		}
	}
	return ""
}
