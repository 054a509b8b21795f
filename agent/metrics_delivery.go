package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpumeter/gpumeter/metering/reporter"
	"github.com/gpumeter/gpumeter/metering/spool"
)

// Delivery metrics: the spool's depth and the reporter's progress, read at
// scrape time from the spool's own counters (kept in the same transactions
// as the data they count).
var (
	descSpoolPending      = newDesc("spool_pending_records", "Records stored in the spool, not yet sealed into a batch.")
	descSpoolPendingBytes = newDesc("spool_pending_bytes", "Bytes of records stored in the spool, not yet sealed.")
	descSpoolUnacked      = newDesc("spool_unacked_batches", "Sealed batches the authority has not acknowledged yet.")
	descSpoolUnackedBytes = newDesc("spool_unacked_bytes", "Bytes of sealed batches not acknowledged yet.")
	descSpoolDead         = newDesc("spool_dead_letter_batches", "Batches the authority refused for good, kept in the dead-letter bucket.")
	descSpoolFile         = newDesc("spool_file_bytes", "Size of the spool file.")
	descSpoolMax          = newDesc("spool_max_bytes", "spool.max_bytes: past pending plus unacknowledged bytes this large, old pending records are merged (0: no cap).")
	descSpoolHeld         = newDesc("spool_held_records", "Records held in memory because the spool is full (lost on a crash, then recorded as agent_down).")
	descAckedSeq          = newDesc("report_acked_sequence", "Highest record sequence number the authority has acknowledged.")
	descSealedSeq         = newDesc("report_sealed_sequence", "Highest record sequence number sealed into a signed batch.")
	descReportBatches     = newDesc("report_batches_total", "Batches the authority accepted (answered 200), duplicates included.")
	descReportRecords     = newDesc("report_records_total", "Records in batches the authority accepted.")
	descReportDuplicates  = newDesc("report_duplicates_total", "Resent batches the authority already had (its answer had been lost): stored once.")
	descReportFailures    = newDesc("report_failed_attempts_total", "Failed requests to the authority, retries included.")
	descReportConsecutive = newDesc("report_consecutive_failures", "Failed sends since the last accepted one.")
	descReportDead        = newDesc("report_dead_letters_total", "Batches the authority refused for good (moved to the dead-letter bucket).")
	descReportBlocked     = newDesc("report_blocked", "1 while delivery waits for an operator (a refused batch, or an authority that lost or holds data this spool does not).")
	descReportLastSuccess = newDesc("report_last_success_timestamp_seconds", "When the authority last accepted a batch (0: never).")

	descDeliveryHeld     = newDesc("delivery_held", "1 while the authority holds the next batch back for a reason an operator or time fixes (the batch is kept and sent again, never dead-lettered).")
	descDeliveryHeldInfo = newDesc("delivery_held_info",
		"1 while delivery is held, with the authority's cause (gpu-not-registered, unknown-key, window-not-ended, ...); absent otherwise.", "cause")
	descDeliveryHeldSince = newDesc("delivery_held_since_timestamp_seconds", "When the current hold began (0: not held).")
	descSecondSigner      = newDesc("delivery_second_signer", "1 while delivery is blocked because another copy of this node signs with its key (the authority answered second-signer).")
	descClockOffset       = newDesc("authority_clock_offset_seconds", "The authority's clock minus this host's, from the last answer (a problem's authority_time, else the Date header to the second); absent until an answer.")
	descClockOffsetMax    = newDesc("authority_clock_offset_max_seconds", "authority.max_clock_offset: past this offset the agent logs a warning.")
	descSpoolAcked        = newDesc("spool_retained_batches", "Acknowledged batches kept (spool.retain_acked) to send again to an authority restored from a backup.")
	descSpoolAckedBytes   = newDesc("spool_retained_bytes", "Bytes of acknowledged batches kept; they count against spool.max_bytes and are dropped first.")
	descLogFailures       = newDesc("log_verify_failures_total",
		"Failed checks of the authority's verifiable log, by reason (signature, inclusion, inconsistent, head-hash, unverified).", "reason")
	descLogInconsistent = newDesc("log_inconsistent", "1 while delivery is held because the authority's log or head contradicts what this agent kept (gpumeter spool accept-log ends it).")
	descLogSize         = newDesc("log_checkpoint_size", "Tree size of the newest checkpoint of the authority's log verified (0: none yet).")
	descRecoveries      = newDesc("report_recoveries_total", "Times an authority restored from a backup was sent again the acknowledged batches it lost.")
	descRecoveryLost    = newDesc("report_recovery_lost", "1 while a restored authority lacks acknowledged batches this spool no longer retains.")
	descInstance        = newDesc("instance_info",
		"1, with this copy's instance id (made at first start, renewed on a copied disk image); batches carry it.", "instance")
)

type deliveryCollector struct{ m *Metrics }

func (c deliveryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSpoolPending, descSpoolPendingBytes, descSpoolUnacked,
		descSpoolUnackedBytes, descSpoolDead, descSpoolFile, descSpoolMax, descSpoolHeld, descAckedSeq, descSealedSeq,
		descReportBatches, descReportRecords, descReportDuplicates, descReportFailures, descReportConsecutive,
		descReportDead, descReportBlocked, descReportLastSuccess,
		descDeliveryHeld, descDeliveryHeldInfo, descDeliveryHeldSince, descSecondSigner,
		descClockOffset, descClockOffsetMax, descInstance,
		descSpoolAcked, descSpoolAckedBytes, descLogFailures, descLogInconsistent, descLogSize,
		descRecoveries, descRecoveryLost,
		descSpoolAppendFailing, descSpoolQuarantined, descSpoolNeedsAnchor} {
		ch <- d
	}
}

func (c deliveryCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.m.watched()
	if d == nil {
		return
	}
	st := d.spool.Stats()
	collectSpool(ch, d, st)
	acked, sealed, _ := d.spool.Head()
	for _, v := range []struct {
		desc *prometheus.Desc
		val  float64
	}{
		{descSpoolPending, float64(st.PendingRecords)},
		{descSpoolPendingBytes, float64(st.PendingBytes)},
		{descSpoolUnacked, float64(st.UnackedBatches)},
		{descSpoolUnackedBytes, float64(st.UnackedBytes)},
		{descSpoolDead, float64(st.DeadLetters)},
		{descSpoolAcked, float64(st.AckedBatches)},
		{descSpoolAckedBytes, float64(st.AckedBytes)},
		{descSpoolFile, float64(st.FileBytes)},
		{descSpoolMax, float64(st.MaxBytes)},
		{descSpoolHeld, float64(d.heldRecords())},
		{descAckedSeq, float64(acked)},
		{descSealedSeq, float64(sealed)},
	} {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.GaugeValue, v.val)
	}
	if d.instance != "" {
		ch <- prometheus.MustNewConstMetric(descInstance, prometheus.GaugeValue, 1, d.instance)
	}
	if d.reporter == nil {
		return
	}
	rs := d.reporter.Stats()
	c.collectDelivery(ch, rs, d.maxClockOffset)
	collectLog(ch, rs)
	blocked, last := 0.0, 0.0
	if rs.Blocked {
		blocked = 1
	}
	if !rs.LastSuccess.IsZero() {
		last = float64(rs.LastSuccess.UnixMilli()) / 1000
	}
	for _, v := range []struct {
		desc *prometheus.Desc
		typ  prometheus.ValueType
		val  float64
	}{
		{descReportBatches, prometheus.CounterValue, float64(rs.SentBatches)},
		{descReportRecords, prometheus.CounterValue, float64(rs.SentRecords)},
		{descReportDuplicates, prometheus.CounterValue, float64(rs.Duplicates)},
		{descReportFailures, prometheus.CounterValue, float64(rs.FailedAttempts)},
		{descReportConsecutive, prometheus.GaugeValue, float64(rs.ConsecutiveFailures)},
		{descReportDead, prometheus.CounterValue, float64(rs.DeadLetters)},
		{descReportBlocked, prometheus.GaugeValue, blocked},
		{descReportLastSuccess, prometheus.GaugeValue, last},
	} {
		ch <- prometheus.MustNewConstMetric(v.desc, v.typ, v.val)
	}
}

// collectDelivery sends the held, second-signer and clock metrics.
func (c deliveryCollector) collectDelivery(ch chan<- prometheus.Metric, rs reporter.Stats, maxOffset time.Duration) {
	held, since, second := 0.0, 0.0, 0.0
	if rs.Held {
		held = 1
		since = float64(rs.HeldSince.UnixMilli()) / 1000
		ch <- prometheus.MustNewConstMetric(descDeliveryHeldInfo, prometheus.GaugeValue, 1, rs.HeldCause)
	}
	if rs.SecondSigner {
		second = 1
	}
	ch <- prometheus.MustNewConstMetric(descDeliveryHeld, prometheus.GaugeValue, held)
	ch <- prometheus.MustNewConstMetric(descDeliveryHeldSince, prometheus.GaugeValue, since)
	ch <- prometheus.MustNewConstMetric(descSecondSigner, prometheus.GaugeValue, second)
	ch <- prometheus.MustNewConstMetric(descClockOffsetMax, prometheus.GaugeValue, maxOffset.Seconds())
	if rs.ClockOffsetKnown {
		ch <- prometheus.MustNewConstMetric(descClockOffset, prometheus.GaugeValue, rs.ClockOffset.Seconds())
	}
}

// collectLog sends the verifiable log's and recovery's metrics. Every
// reason's counter is sent from the start, so that an alert on its
// increase sees the first failure.
func collectLog(ch chan<- prometheus.Metric, rs reporter.Stats) {
	for _, reason := range []string{reporter.LogSignature, reporter.LogInclusion, reporter.LogInconsistent, reporter.LogHeadHash, reporter.LogUnverified} {
		ch <- prometheus.MustNewConstMetric(descLogFailures, prometheus.CounterValue, float64(rs.LogVerifyFailures[reason]), reason)
	}
	ch <- prometheus.MustNewConstMetric(descLogInconsistent, prometheus.GaugeValue, b2f(rs.LogInconsistent))
	ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(rs.LogCheckpointSize))
	ch <- prometheus.MustNewConstMetric(descRecoveries, prometheus.CounterValue, float64(rs.Recoveries))
	ch <- prometheus.MustNewConstMetric(descRecoveryLost, prometheus.GaugeValue, b2f(rs.LostRange != ""))
}

// WatchDelivery makes the spool and reporter metrics read this delivery.
func (m *Metrics) WatchDelivery(d *delivery) {
	m.mu.Lock()
	m.delivery = d
	m.mu.Unlock()
}

// watched is the delivery the metrics read, nil before WatchDelivery.
func (m *Metrics) watched() *delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.delivery
}

func (m *Metrics) setSpoolFull(full bool) {
	if full {
		m.spoolFull.Set(1)
	} else {
		m.spoolFull.Set(0)
	}
}

// Spool integrity and storage metrics (the spool's own faults, apart from
// delivery): read at scrape time.
var (
	descSpoolAppendFailing = newDesc("spool_append_failing", "1 while the last attempt to store records in the spool failed (disk full, I/O error, or spool full): records are held in memory.")
	descSpoolQuarantined   = newDesc("spool_quarantined_total", "Spool entries moved to quarantine because their bytes were damaged (an undecodable pending entry, a batch that no longer matches its hash), plus damaged spool files moved aside at start.")
	descSpoolNeedsAnchor   = newDesc("spool_needs_anchor", "1 while the spool waits to be anchored on the authority's head (it replaced a damaged file or quarantined a batch): nothing is sealed meanwhile.")
)

// collectSpool sends the spool's integrity metrics; deliveryCollector
// calls it with the stats it read.
func collectSpool(ch chan<- prometheus.Metric, d *delivery, st spool.Stats) {
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
