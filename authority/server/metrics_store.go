package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

// storeCollectorName is the collector label of the store's metrics.
const storeCollectorName = "store"

// storeScrapeTimeout bounds the store reads of one scrape.
const storeScrapeTimeout = 5 * time.Second

// storeCollector exports what the store holds at each scrape
// (store.Health): the review queue, and per node and GPU the last batch,
// the declared window and the coverage, for the alert rules of
// packaging/prometheus/authority-alerts.yml. A failed read is counted and
// logged and exports success 0 and none of the store's series: never an
// error for the whole scrape.
//
// Money stays integer fen (gpumeter_authority_held_subsidy_fen): the
// project's one unit of money. Prometheus has no base unit for currency
// and promtool's lint accepts the suffix; a float64 holds any fen amount
// below 2^53 (90 trillion CNY) exactly.
type storeCollector struct {
	read   func(context.Context) (store.Health, error)
	log    *slog.Logger
	errors atomic.Uint64

	success, duration, errorsTotal                  *prometheus.Desc
	held, oldestHeld, reviews                       *prometheus.Desc
	forked, lastBatch, window, nodeCovered, covered *prometheus.Desc
}

func newStoreCollector(read func(context.Context) (store.Health, error), log *slog.Logger) *storeCollector {
	col := []string{"collector"}
	return &storeCollector{
		read: read, log: log,
		success: prometheus.NewDesc("gpumeter_authority_collector_success",
			"Whether the collector's last read succeeded (1) or failed (0).", col, nil),
		duration: prometheus.NewDesc("gpumeter_authority_collector_duration_seconds",
			"How long the collector's last read took.", col, nil),
		errorsTotal: prometheus.NewDesc("gpumeter_authority_collector_errors_total",
			"Reads of the collector that failed (that scrape lacks its series).", col, nil),
		held: prometheus.NewDesc("gpumeter_authority_held_subsidy_fen",
			"Subsidy held for review, in fen (0.01 CNY): taken from vouchers, neither claimable nor owed until an operator decides.", nil, nil),
		oldestHeld: prometheus.NewDesc("gpumeter_authority_oldest_held_review_timestamp_seconds",
			"When the oldest review still held was created (absent when none is held).", nil, nil),
		reviews: prometheus.NewDesc("gpumeter_authority_reviews",
			"Reviews of held subsidies, by status (held, approved, rejected).", []string{"status"}, nil),
		forked: prometheus.NewDesc("gpumeter_authority_node_forked",
			"Whether the node is flagged for review (1): a second copy of it signed batches (refused); its stored chain keeps delivering until an operator clears the flag (node unfork).", []string{"node"}, nil),
		lastBatch: prometheus.NewDesc("gpumeter_authority_node_last_batch_timestamp_seconds",
			"When the node's latest stored batch was received (absent before its first).", []string{"node"}, nil),
		window: prometheus.NewDesc("gpumeter_authority_node_window_seconds",
			"The metering window the node's latest inventory declared (absent before its first inventory).", []string{"node"}, nil),
		nodeCovered: prometheus.NewDesc("gpumeter_authority_node_covered_until_timestamp_seconds",
			"The latest window end of any of the node's GPUs (absent while none has a window).", []string{"node"}, nil),
		covered: prometheus.NewDesc("gpumeter_authority_gpu_covered_until_timestamp_seconds",
			"The end of the GPU's latest window, for every GPU of a node that has any (0: this GPU has none).", []string{"node", "gpu"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.success, c.duration, c.errorsTotal, c.held, c.oldestHeld, c.reviews,
		c.forked, c.lastBatch, c.window, c.nodeCovered, c.covered} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), storeScrapeTimeout)
	defer cancel()
	start := time.Now()
	h, err := c.read(ctx)
	took := time.Since(start)
	ok := 1.0
	if err != nil {
		ok = 0
		c.errors.Add(1)
		c.log.Error("metrics: reading the store failed", slog.Any("err", err))
	}
	ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, ok, storeCollectorName)
	ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, took.Seconds(), storeCollectorName)
	ch <- prometheus.MustNewConstMetric(c.errorsTotal, prometheus.CounterValue, float64(c.errors.Load()), storeCollectorName)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(h.HeldFen))
	if !h.OldestHeld.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.oldestHeld, prometheus.GaugeValue, unixSeconds(h.OldestHeld))
	}
	for _, st := range []string{billing.ReviewHeld, billing.ReviewApproved, billing.ReviewRejected} {
		ch <- prometheus.MustNewConstMetric(c.reviews, prometheus.GaugeValue, float64(h.Reviews[st]), st)
	}
	for _, n := range h.Nodes {
		ch <- prometheus.MustNewConstMetric(c.forked, prometheus.GaugeValue, boolValue(n.Forked), n.ID)
		if !n.LastBatch.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastBatch, prometheus.GaugeValue, unixSeconds(n.LastBatch), n.ID)
		}
		if n.Window > 0 {
			ch <- prometheus.MustNewConstMetric(c.window, prometheus.GaugeValue, n.Window.Seconds(), n.ID)
		}
		if n.CoveredUntil.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.nodeCovered, prometheus.GaugeValue, unixSeconds(n.CoveredUntil), n.ID)
		for _, g := range n.GPUs {
			v := 0.0
			if !g.CoveredUntil.IsZero() {
				v = unixSeconds(g.CoveredUntil)
			}
			ch <- prometheus.MustNewConstMetric(c.covered, prometheus.GaugeValue, v, n.ID, g.UUID)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t as Unix seconds, milliseconds kept.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }
