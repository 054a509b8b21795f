package nvml_test

import (
	"fmt"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// TestTimeSlicedSamplesWeighByCount: under time-slicing NVML samples the
// process holding the GPU, so two processes get samples at different
// timestamps. A process's weight is the sum of its samples over the cycle
// (each (PID, timestamp) once; empty buffer slots and already-seen
// timestamps ignored), not the mean of the last ones; a process with no
// sample gets weight 0 and Unknown utilization.
func TestTimeSlicedSamplesWeighByCount(t *testing.T) {
	m := dgx(t, nil)
	if err := m.SetProcesses(m.GPUUUID(2), procs(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	s := func(pid uint32, ts uint64, sm uint32) gonvml.ProcessUtilizationSample {
		return gonvml.ProcessUtilizationSample{Pid: pid, TimeStamp: ts, SmUtil: sm}
	}
	c := started(t, m)
	cycles := []struct {
		buf  []gonvml.ProcessUtilizationSample
		want string // pid:SMWeight/SMUtil ...
	}{
		{
			// 1 held the GPU at 10, 30 and 50 (30 listed twice), at 50%;
			// 2 at 20 and 40 at 100%: the mean would make 2 twice 1.
			buf:  []gonvml.ProcessUtilizationSample{s(1, 10, 50), s(2, 20, 100), s(1, 30, 50), s(1, 30, 50), s(2, 40, 100), s(1, 50, 50), s(0, 0, 0), s(0, 0, 0)},
			want: "1:150/50 2:200/100 3:0/-1",
		},
		{
			// Newer samples only: 40 and 50 were counted in the last cycle.
			buf:  []gonvml.ProcessUtilizationSample{s(2, 40, 100), s(1, 50, 50), s(2, 60, 80), s(3, 70, 30), s(9, 80, 100)},
			want: "1:0/-1 2:80/80 3:30/30",
		},
		{
			// Garbage above 100 counts as 100.
			buf:  []gonvml.ProcessUtilizationSample{s(1, 90, 250), s(1, 100, 100)},
			want: "1:200/100 2:0/-1 3:0/-1",
		},
		{
			// Nothing newer: NOT_FOUND, no weights.
			buf:  []gonvml.ProcessUtilizationSample{s(1, 100, 100)},
			want: "1:0/-1 2:0/-1 3:0/-1",
		},
	}
	for i, cy := range cycles {
		m.SetProcessSamples(2, cy.buf)
		d := collect(t, c).Devices[2]
		if d.Err != nil {
			t.Fatalf("cycle %d: %v", i, d.Err)
		}
		if got := weights(d.Processes); got != cy.want {
			t.Errorf("cycle %d: %s, want %s", i, got, cy.want)
		}
	}
}

func weights(ps []device.Process) string {
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%d:%d/%d", p.PID, p.SMWeight, p.SMUtil)
	}
	return out
}
