package nvml

import gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

// Open returns the real NVML library. Nothing is loaded until the
// collector's Start calls Init, which dlopens libnvidia-ml.so.1, so a binary
// built with it still starts on a machine without the NVIDIA driver.
func Open() gonvml.Interface { return gonvml.New() }
