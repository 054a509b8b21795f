package nvml_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

// driverDir writes a /proc/driver/nvidia with an information file per GPU
// of m, as the kernel driver does whether or not NVML can read the GPU.
func driverDir(t *testing.T, m *sim.Machine, model string) string {
	t.Helper()
	dir := t.TempDir()
	for i := range 8 {
		gpu := filepath.Join(dir, "gpus", fmt.Sprintf("0000:%02x:00.0", 0x18+i))
		if err := os.MkdirAll(gpu, 0o755); err != nil {
			t.Fatal(err)
		}
		info := fmt.Sprintf("Model: \t\t %s\nIRQ:   \t\t %d\nGPU UUID: \t %s\nVideo BIOS: \t 96.00.99.00.01\n"+
			"Bus Type: \t PCIe\nDMA Size: \t 52 bits\nBus Location: \t 0000:%02x:00.0\nDevice Minor: \t %d\nGPU Excluded:\t No\n",
			model, 200+i, strings.ToUpper(m.GPUUUID(i)), 0x18+i, i)
		if err := os.WriteFile(filepath.Join(gpu, "information"), []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestGPULostBeforeTheFirstRead: a GPU that fell off the bus before the
// agent's first read has no identity NVML will give. With the driver's
// /proc directory it is reported by the identity the driver gives it, with
// GPU_IS_LOST, from the first cycle on, so the meter counts its time as a
// device_lost gap from the first window; without it, it is left out.
func TestGPULostBeforeTheFirstRead(t *testing.T) {
	m := dgx(t, nil)
	m.SetLost(3, true)
	dir := driverDir(t, m, "NVIDIA H100 80GB HBM3")

	bare := collect(t, startedOn(t, m.Interface()))
	if len(bare.Devices) != 7 {
		t.Errorf("without the driver's directory: %d devices, want the 7 readable", len(bare.Devices))
	}

	vclock := clock.NewVirtual(t0)
	c := nvml.New(m.Interface(), nvml.Options{Clock: vclock, DriverDir: dir})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	attr, err := attribution.New(attribution.Config{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mt, err := meter.New(meter.Options{Node: "n", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var recs []protocol.Record
	for s := range 61 {
		now := t0.Add(time.Duration(s) * time.Second)
		vclock.Set(now)
		if s == 30 {
			m.SetLost(3, false)
		}
		snap := collect(t, c)
		if len(snap.Devices) != 8 {
			t.Fatalf("second %d: %d devices, want 8", s, len(snap.Devices))
		}
		lost := snap.Devices[len(snap.Devices)-1]
		if s == 0 {
			// Reported last: NVML cannot say which index it is.
			if lost.UUID != m.GPUUUID(3) || lost.Model != "NVIDIA H100 80GB HBM3" || !errors.Is(lost.Err, gonvml.ERROR_GPU_IS_LOST) {
				t.Errorf("lost GPU at the first read: %s %q %v, want %s, its model, GPU_IS_LOST", lost.UUID, lost.Model, lost.Err, m.GPUUUID(3))
			}
		}
		if s >= 30 {
			for _, d := range snap.Devices {
				if d.Err != nil {
					t.Fatalf("second %d: GPU %s still failing after it came back: %v", s, d.UUID, d.Err)
				}
			}
		}
		recs = append(recs, mt.Observe(now, attr.Attribute(t.Context(), snap))...)
	}
	var got []string
	for _, r := range recs {
		if r.GPUUUID == m.GPUUUID(3) {
			got = append(got, fmt.Sprintf("%s %s %d", r.Kind, r.GapReason, r.GPUMillis))
		}
	}
	if want := "[idle  30000 gap device_lost 30000]"; fmt.Sprint(got) != want {
		t.Errorf("GPU 3's first window: %v, want %s", got, want)
	}
}
