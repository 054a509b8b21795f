package nvml_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/nvml"
	"github.com/gpumeter/gpumeter/collectors/sim"
)

// A driver that sees no GPU is a clear error at start, and the collector
// then refuses to collect, rather than metering nothing in silence.
func TestStartWithNoGPUFails(t *testing.T) {
	m, err := sim.NewMachine(sim.GPUSpec{})
	if err != nil {
		t.Fatal(err)
	}
	m.SetPresent(0, false) // the driver enumerates nothing
	c := nvml.New(m.Interface(), nvml.Options{})
	if err := c.Start(); !errors.Is(err, nvml.ErrNoGPU) {
		t.Fatalf("Start with no GPU: %v, want ErrNoGPU", err)
	}
	if _, err := c.Collect(context.Background()); err == nil {
		t.Fatal("Collect after a failed Start succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after a failed Start: %v", err)
	}
}
