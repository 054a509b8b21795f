package nvmlcollector

import "github.com/NVIDIA/go-nvml/pkg/nvml"

// Open returns the real NVML library. Nothing is loaded until the
// collector's Start calls Init, which dlopens libnvidia-ml.so.1, so a binary
// built with it still starts on a machine without the NVIDIA driver.
func Open() nvml.Interface { return nvml.New() }
