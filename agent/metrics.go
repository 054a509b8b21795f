package agent

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/gpumeter/gpumeter/collectors/attribution"
	"github.com/gpumeter/gpumeter/collectors/device"
	"github.com/gpumeter/gpumeter/metering/meter"
	"github.com/gpumeter/gpumeter/protocol"
)

const namespace = "gpumeter"

// newDesc describes a metric read at scrape time: name without the
// namespace, its help, its variable labels.
func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

// gaugeOpts names a metric of the agent's namespace (a CounterOpts
// converts from it: the two are one type).
func gaugeOpts(name, help string) prometheus.GaugeOpts {
	return prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}
}

// collectorNVML names the device collector in the collector_* metrics.
const collectorNVML = "nvml"

// Metrics exposes the agent on a private registry. GPU-time counters are
// read from the meter's own totals at scrape time, so nothing is counted
// twice and /metrics always agrees with the records.
type Metrics struct {
	Registry *prometheus.Registry

	cycleDuration     prometheus.Histogram
	collectorSuccess  *prometheus.GaugeVec
	collectorDuration *prometheus.GaugeVec
	collectorErrors   *prometheus.CounterVec
	recordsTotal      *prometheus.CounterVec
	lastCycle         prometheus.Gauge
	spoolFull         prometheus.Gauge
	reloadOK          prometheus.Gauge
	reloadOKTime      prometheus.Gauge

	mu       sync.Mutex
	snap     device.Snapshot
	obs      []attribution.Observation
	m        *meter.Meter
	delivery *delivery
}

// NewMetrics registers the agent's metrics; version is the build's version.
func NewMetrics(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "cycle_duration_seconds",
			Help:    "Time of one collect, attribute and meter cycle.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		collectorSuccess: prometheus.NewGaugeVec(gaugeOpts("collector_success",
			"Whether the collector's last collection succeeded (1) or failed (0)."), []string{"collector"}),
		collectorDuration: prometheus.NewGaugeVec(gaugeOpts("collector_duration_seconds",
			"Duration of the collector's last collection."), []string{"collector"}),
		collectorErrors: prometheus.NewCounterVec(prometheus.CounterOpts(gaugeOpts("collector_errors_total",
			"Collections that failed as a whole.")), []string{"collector"}),
		recordsTotal: prometheus.NewCounterVec(prometheus.CounterOpts(gaugeOpts("records_total",
			"Usage records produced by closed windows, by kind.")), []string{"kind"}),
		lastCycle: prometheus.NewGauge(gaugeOpts("last_cycle_timestamp_seconds",
			"Time of the last completed metering cycle (agent clock).")),
		spoolFull: prometheus.NewGauge(gaugeOpts("spool_full",
			"1 while the spool is full even after merging: new windows are held in memory.")),
		// The names Prometheus and Alertmanager use for the same thing, so
		// existing alerts on *_config_last_reload_successful fit.
		reloadOK: prometheus.NewGauge(gaugeOpts("config_last_reload_successful",
			"Whether the last config load (at start or on SIGHUP) was applied (1) or refused (0).")),
		reloadOKTime: prometheus.NewGauge(gaugeOpts("config_last_reload_success_timestamp_seconds",
			"When a config was last loaded and applied (at start or on SIGHUP).")),
	}
	// gpumeter_build_info as node_exporter has it: revision, branch, Go
	// version, platform (github.com/prometheus/common/version, set by the
	// build's -ldflags). Its version label is the one the agent stamps on
	// its records, so the two never disagree.
	buildInfo := versioncollector.NewCollector(namespace,
		versioncollector.WithExtraConstLabels(prometheus.Labels{"version": version}))
	// Counters exist at zero before their first event, so rate() and
	// alerts see them from the first scrape.
	m.collectorErrors.WithLabelValues(collectorNVML)
	for _, k := range []protocol.Kind{protocol.KindUsage, protocol.KindIdle, protocol.KindGap} {
		m.recordsTotal.WithLabelValues(string(k))
	}
	reg.MustRegister(m.cycleDuration, m.collectorSuccess, m.collectorDuration,
		m.collectorErrors, m.recordsTotal, m.lastCycle, m.spoolFull, buildInfo,
		m.reloadOK, m.reloadOKTime,
		(*stateCollector)(m), deliveryCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch makes the GPU-time counters read this meter's totals.
func (m *Metrics) Watch(mt *meter.Meter) {
	m.mu.Lock()
	m.m = mt
	m.mu.Unlock()
}

func (m *Metrics) observeCollect(name string, d time.Duration, err error) {
	m.collectorDuration.WithLabelValues(name).Set(d.Seconds())
	if err != nil {
		m.collectorSuccess.WithLabelValues(name).Set(0)
		m.collectorErrors.WithLabelValues(name).Inc()
		return
	}
	m.collectorSuccess.WithLabelValues(name).Set(1)
}

func (m *Metrics) observeCycle(s device.Snapshot, obs []attribution.Observation, recs []protocol.Record, d time.Duration, at time.Time) {
	m.cycleDuration.Observe(d.Seconds())
	m.lastCycle.Set(float64(at.UnixMilli()) / 1000)
	m.countRecords(recs)
	m.mu.Lock()
	m.snap, m.obs = s, obs
	m.mu.Unlock()
}

// configLoaded records a config load's outcome at real time now.
func (m *Metrics) configLoaded(ok bool, now time.Time) {
	if !ok {
		m.reloadOK.Set(0)
		return
	}
	m.reloadOK.Set(1)
	m.reloadOKTime.Set(float64(now.UnixMilli()) / 1000)
}

func (m *Metrics) countRecords(recs []protocol.Record) {
	for i := range recs {
		m.recordsTotal.WithLabelValues(string(recs[i].Kind)).Inc()
	}
}

// stateCollector turns the latest snapshot and the meter's totals into
// metrics at scrape time (the node_exporter pattern: no state is copied
// into gauge vectors that could go stale when a GPU or tenant disappears).
type stateCollector Metrics

var (
	descTenantSeconds = newDesc("tenant_gpu_seconds_total",
		"GPU time metered to a tenant on a unit (whole GPU or MIG instance), from the meter's records and open window.", "tenant", "gpu_uuid")
	descUnitSeconds = newDesc("unit_seconds_total",
		"Time of a unit (whole GPU or MIG instance) by kind: usage, idle or gap.", "gpu_uuid", "kind")
	descGPUInfo = newDesc("gpu_info",
		"A physical GPU on this node; always 1.", "gpu_uuid", "index", "model", "mig")
	descGPUUp = newDesc("gpu_up",
		"Whether the GPU was readable in the last cycle (0: lost or unreadable).", "gpu_uuid")
	descGPUUtil = newDesc("gpu_utilization_ratio",
		"GPU SM utilization in the last cycle, 0 to 1.", "gpu_uuid")
	descMemUsed = newDesc("gpu_memory_used_bytes",
		"GPU memory in use.", "gpu_uuid")
	descMemTotal = newDesc("gpu_memory_total_bytes",
		"GPU memory in all.", "gpu_uuid")
	descPower = newDesc("gpu_power_watts",
		"GPU board power draw.", "gpu_uuid")
	descEnergy = newDesc("gpu_energy_joules_total",
		"GPU energy counter since the driver loaded.", "gpu_uuid")
	descUnitProcs = newDesc("unit_processes",
		"Compute processes on a unit in the last cycle, by tenant.", "gpu_uuid", "tenant")
	descMIGInfo = newDesc("mig_instance_info",
		"A MIG instance; always 1.", "gpu_uuid", "parent_uuid", "profile", "slices", "total_slices")
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTenantSeconds, descUnitSeconds, descGPUInfo, descGPUUp,
		descGPUUtil, descMemUsed, descMemTotal, descPower, descEnergy, descUnitProcs, descMIGInfo} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	snap, obs, mt := c.snap, c.obs, c.m
	c.mu.Unlock()
	if mt != nil {
		type unitKind struct {
			unit string
			kind protocol.Kind
		}
		perUnit := map[unitKind]int64{}
		for k, ms := range mt.Totals() {
			perUnit[unitKind{k.UnitUUID, k.Kind}] += ms
			if k.Kind == protocol.KindUsage {
				ch <- prometheus.MustNewConstMetric(descTenantSeconds, prometheus.CounterValue, float64(ms)/1000, k.Tenant, k.UnitUUID)
			}
		}
		for k, ms := range perUnit {
			ch <- prometheus.MustNewConstMetric(descUnitSeconds, prometheus.CounterValue, float64(ms)/1000, k.unit, string(k.kind))
		}
	}
	for i := range snap.Devices {
		d := &snap.Devices[i]
		mig := "false"
		if d.MIGEnabled {
			mig = "true"
		}
		ch <- prometheus.MustNewConstMetric(descGPUInfo, prometheus.GaugeValue, 1, d.UUID, itoa(d.Index), d.Model, mig)
		up := 1.0
		if d.Err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descGPUUp, prometheus.GaugeValue, up, d.UUID)
		if d.Err != nil {
			continue
		}
		if d.UtilizationPercent != device.Unknown {
			ch <- prometheus.MustNewConstMetric(descGPUUtil, prometheus.GaugeValue, float64(d.UtilizationPercent)/100, d.UUID)
		}
		ch <- prometheus.MustNewConstMetric(descMemUsed, prometheus.GaugeValue, float64(d.MemoryUsedBytes), d.UUID)
		ch <- prometheus.MustNewConstMetric(descMemTotal, prometheus.GaugeValue, float64(d.MemoryTotalBytes), d.UUID)
		if d.PowerMilliwatts != device.Unknown {
			ch <- prometheus.MustNewConstMetric(descPower, prometheus.GaugeValue, float64(d.PowerMilliwatts)/1000, d.UUID)
		}
		if d.EnergyMillijoules != device.Unknown {
			ch <- prometheus.MustNewConstMetric(descEnergy, prometheus.CounterValue, float64(d.EnergyMillijoules)/1000, d.UUID)
		}
		for j := range d.Instances {
			in := &d.Instances[j]
			ch <- prometheus.MustNewConstMetric(descMIGInfo, prometheus.GaugeValue, 1, in.UUID, d.UUID, in.Profile, itoa(in.Slices), itoa(in.TotalSlices))
		}
	}
	for i := range obs {
		for _, s := range obs[i].Shares {
			ch <- prometheus.MustNewConstMetric(descUnitProcs, prometheus.GaugeValue, float64(len(s.PIDs)), obs[i].Unit.UUID, s.Tenant)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
