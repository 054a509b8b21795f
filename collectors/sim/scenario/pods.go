package scenario

import (
	"strconv"
	"time"
)

// Pod is a Kubernetes pod's container holding one unit on [Start, End):
// what the simulated kubelet's PodResources API reports (resource
// nvidia.com/gpu for a whole GPU, nvidia.com/mig-<profile> for a MIG
// instance, the unit's UUID as device id). It says nothing about
// processes: a job on the unit is that pod's work, and its tenant (the
// job's) is what the namespace rules must give; a pod without a job on its
// unit leaves the unit idle.
type Pod struct {
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	// Container defaults to "main".
	Container string        `yaml:"container"`
	GPU       int           `yaml:"gpu"`
	MIG       *int          `yaml:"mig"`
	Start     time.Duration `yaml:"start"`
	End       time.Duration `yaml:"end"`

	layout int
}

// Outage is a span [From, To) when the kubelet's socket is gone (a kubelet
// restart or upgrade).
type Outage struct {
	From time.Duration `yaml:"from"`
	To   time.Duration `yaml:"to"`
}

// Unit is the unit the pod holds, in the layout in force at its start.
func (p *Pod) Unit() Unit {
	if p.MIG == nil {
		return Unit{GPU: p.GPU, MIG: -1, Layout: p.layout}
	}
	return Unit{GPU: p.GPU, MIG: *p.MIG, Layout: p.layout}
}

// PodAlloc is one pod's device as the kubelet reports it.
type PodAlloc struct {
	Namespace, Pod, Container string
	Resource                  string
	DeviceID                  string
}

// HasKubelet reports whether the scenario simulates a kubelet.
func (s *Scenario) HasKubelet() bool { return len(s.Pods) > 0 || len(s.KubeletDown) > 0 }

// KubeletUp reports whether the kubelet's socket is there at t.
func (s *Scenario) KubeletUp(t time.Time) bool {
	off := t.Sub(s.Start)
	for _, o := range s.KubeletDown {
		if off >= o.From && off < o.To {
			return false
		}
	}
	return true
}

// Pods is what the kubelet reports at t, which the driver must have been
// applied at (a MIG instance's UUID exists once its layout is).
func (d *Driver) Pods(t time.Time) []PodAlloc {
	off := t.Sub(d.s.Start)
	var out []PodAlloc
	for i := range d.s.Pods {
		p := &d.s.Pods[i]
		if off < p.Start || off >= p.End {
			continue
		}
		u := p.Unit()
		res := "nvidia.com/gpu"
		if u.MIG >= 0 {
			res = "nvidia.com/mig-" + d.s.layoutsOf(u.GPU)[u.Layout].mig[u.MIG]
		}
		out = append(out, PodAlloc{Namespace: p.Namespace, Pod: p.Name, Container: p.Container,
			Resource: res, DeviceID: d.UnitUUID(u)})
	}
	return out
}

// validatePods checks pods and outages like jobs: a unit that exists
// throughout, whole milliseconds inside the run.
func (s *Scenario) validatePods() error {
	for i := range s.Pods {
		p := &s.Pods[i]
		key := "pods." + strconv.Itoa(i)
		bad := func(f, format string, args ...any) error {
			return s.fail([]string{key + "." + f, key}, "pod %d: "+format, append([]any{i + 1}, args...)...)
		}
		if p.Container == "" {
			p.Container = "main"
		}
		if p.Namespace == "" || p.Name == "" {
			return bad("namespace", "namespace and name: required")
		}
		if p.GPU < 0 || p.GPU >= len(s.GPUs) {
			return bad("gpu", "gpu %d out of range (the scenario has %d)", p.GPU, len(s.GPUs))
		}
		if err := s.checkSpan(bad, "start", "end", p.Start, p.End); err != nil {
			return err
		}
		spans := s.layoutsOf(p.GPU)
		for p.layout+1 < len(spans) && spans[p.layout+1].from <= p.Start {
			p.layout++
		}
		span := spans[p.layout]
		if n := len(span.mig); (n > 0) != (p.MIG != nil) || (p.MIG != nil && (*p.MIG < 0 || *p.MIG >= n)) {
			return bad("mig", "gpu %d has %d MIG instances at %v: mig must name one of them, or be absent when it has none", p.GPU, n, p.Start)
		}
		if p.End > span.to {
			return bad("end", "end %v is after gpu %d's layout changes at %v: a pod holds one unit", p.End, p.GPU, span.to)
		}
	}
	for i := range s.KubeletDown {
		o := &s.KubeletDown[i]
		key := "kubelet_down." + strconv.Itoa(i)
		bad := func(f, format string, args ...any) error {
			return s.fail([]string{key + "." + f, key}, "kubelet_down %d: "+format, append([]any{i + 1}, args...)...)
		}
		if err := s.checkSpan(bad, "from", "to", o.From, o.To); err != nil {
			return err
		}
	}
	return nil
}

// checkSpan checks [from, to) lies in the run, in whole milliseconds.
func (s *Scenario) checkSpan(bad func(f, format string, args ...any) error, fromKey, toKey string, from, to time.Duration) error {
	if from < 0 || from%time.Millisecond != 0 {
		return bad(fromKey, "%s: want whole milliseconds from 0, got %v", fromKey, from)
	}
	if to%time.Millisecond != 0 {
		return bad(toKey, "%s: %v is not a whole number of milliseconds", toKey, to)
	}
	if to <= from || to > s.Duration {
		return bad(toKey, "%s %v: want after %v and at most the duration %v", toKey, to, from, s.Duration)
	}
	return nil
}
