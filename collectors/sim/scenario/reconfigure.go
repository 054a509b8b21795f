package scenario

import (
	"fmt"
	"strconv"
	"time"
)

// Reconfig sets a GPU's MIG layout at an instant, as an operator does with
// nvidia-smi mig on an idle GPU: its MIG instances are destroyed and those
// of MIG created, all with new UUIDs; an empty MIG turns MIG mode off. No
// job on the GPU may run across it (the driver refuses to reconfigure a
// busy GPU), and the GPU may not be lost then.
type Reconfig struct {
	GPU int           `yaml:"gpu"`
	At  time.Duration `yaml:"at"`
	// MIG is the new layout (profiles, as in GPU.MIG); required, [] for
	// MIG off.
	MIG []string `yaml:"mig"`

	layout int // the index of the layout it starts in its GPU's layouts
}

// layoutSpan is one MIG layout of a GPU and when it is in force.
type layoutSpan struct {
	from, to time.Duration // [from, to), offsets from Start
	mig      []string      // empty: MIG off
	line     int           // where it was set, for messages
}

// Span is when the unit exists: [from, to), offsets from Start, the time
// its layout is in force ([0, Duration) without reconfiguration).
func (s *Scenario) Span(u Unit) (from, to time.Duration) {
	ls := s.layoutsOf(u.GPU)
	if u.Layout < 0 || u.Layout >= len(ls) {
		return 0, 0
	}
	return ls[u.Layout].from, ls[u.Layout].to
}

// layoutsOf is GPU g's layouts; before validation, its one of gpus.
func (s *Scenario) layoutsOf(g int) []layoutSpan {
	if g < len(s.layouts) {
		return s.layouts[g]
	}
	return []layoutSpan{{from: 0, to: s.Duration, mig: s.GPUs[g].MIG}}
}

// validateReconfigure checks the reconfigurations and builds each GPU's
// layouts: that of gpus from 0, then one per reconfiguration, which must
// be listed in time order per GPU, strictly inside the run.
func (s *Scenario) validateReconfigure() error {
	s.layouts = make([][]layoutSpan, len(s.GPUs))
	for i := range s.GPUs {
		key := "gpus." + strconv.Itoa(i)
		s.layouts[i] = []layoutSpan{{from: 0, to: s.Duration, mig: s.GPUs[i].MIG, line: s.line(key+".mig", key)}}
	}
	for i := range s.Reconfigure {
		rc := &s.Reconfigure[i]
		key := "reconfigure." + strconv.Itoa(i)
		fail := s.entryFail(key, "reconfigure", i)
		if rc.GPU < 0 || rc.GPU >= len(s.GPUs) {
			return fail("gpu", "gpu %d out of range (the scenario has %d)", rc.GPU, len(s.GPUs))
		}
		if _, ok := s.lines[key+".at"]; !ok {
			return fail("at", "at: required (when, from the start)")
		}
		if rc.At <= 0 || rc.At >= s.Duration {
			return fail("at", "at: %v is not inside the scenario (after 0, before %v; the layout at 0 is gpus' mig)", rc.At, s.Duration)
		}
		if rc.At%time.Millisecond != 0 {
			return fail("at", "at: %v is not a whole number of milliseconds", rc.At)
		}
		if _, ok := s.lines[key+".mig"]; !ok {
			return fail("mig", "mig: required: the new layout ([] turns MIG off)")
		}
		spans := s.layouts[rc.GPU]
		prev := &spans[len(spans)-1]
		if rc.At <= prev.from {
			return fail("at", "at %v is not after gpu %d's previous reconfiguration at %v (line %d): list a GPU's reconfigurations in time order",
				rc.At, rc.GPU, prev.from, prev.line)
		}
		if len(rc.MIG) == 0 && len(prev.mig) == 0 {
			return fail("mig", "gpu %d is not in MIG mode at %v: nothing to turn off", rc.GPU, rc.At)
		}
		if err := s.checkLayout(fmt.Sprintf("reconfigure %d", i+1), key, s.GPUs[rc.GPU].Model, rc.MIG); err != nil {
			return err
		}
		prev.to = rc.At
		rc.layout = len(spans)
		s.layouts[rc.GPU] = append(spans, layoutSpan{from: rc.At, to: s.Duration, mig: rc.MIG, line: s.line(key)})
	}
	return nil
}

// reconfigureWhileLost refuses a reconfiguration of a GPU that a fault
// makes lost at that instant: a GPU off the bus cannot be reconfigured.
func (s *Scenario) reconfigureWhileLost() error {
	for i, rc := range s.Reconfigure {
		for k, f := range s.Faults {
			if f.GPU == rc.GPU && f.LostAt <= rc.At && rc.At < f.BackAt {
				key := "reconfigure." + strconv.Itoa(i)
				return s.fail([]string{key + ".at", key}, "reconfigure %d: gpu %d is lost at %v (fault %d, line %d): a lost GPU cannot be reconfigured",
					i+1, rc.GPU, rc.At, k+1, s.line("faults."+strconv.Itoa(k)))
			}
		}
	}
	return nil
}
