module github.com/gpumeter/gpumeter

go 1.26.8

require (
	github.com/NVIDIA/go-nvml v0.13.4-1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/shirou/gopsutil/v3 v3.24.5 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
