package agent

import "github.com/prometheus/client_golang/prometheus"

// Spool integrity and storage metrics (the spool's own faults, apart from
// delivery): read at scrape time.
var (
	descSpoolAppendFailing = prometheus.NewDesc(namespace+"_spool_append_failing",
		"1 while the last attempt to store records in the spool failed (disk full, I/O error, or spool full): records are held in memory.", nil, nil)
	descSpoolQuarantined = prometheus.NewDesc(namespace+"_spool_quarantined_total",
		"Spool entries moved to quarantine because their bytes were damaged (an undecodable pending entry, a batch that no longer matches its hash), plus damaged spool files moved aside at start.", nil, nil)
	descSpoolNeedsAnchor = prometheus.NewDesc(namespace+"_spool_needs_anchor",
		"1 while the spool waits to be anchored on the authority's head (it replaced a damaged file or quarantined a batch): nothing is sealed meanwhile.", nil, nil)
)

type spoolCollector struct{ m *Metrics }

func (c spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSpoolAppendFailing
	ch <- descSpoolQuarantined
	ch <- descSpoolNeedsAnchor
}

func (c spoolCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	d := c.m.delivery
	c.m.mu.Unlock()
	if d == nil {
		return
	}
	st := d.spool.Stats()
	quarantined := st.Quarantined
	if moved, _ := d.spool.QuarantinedFile(); moved != "" {
		quarantined++
	}
	ch <- prometheus.MustNewConstMetric(descSpoolAppendFailing, prometheus.GaugeValue, b2f(d.appendFailing()))
	ch <- prometheus.MustNewConstMetric(descSpoolQuarantined, prometheus.CounterValue, float64(quarantined))
	ch <- prometheus.MustNewConstMetric(descSpoolNeedsAnchor, prometheus.GaugeValue, b2f(st.NeedsAnchor))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
