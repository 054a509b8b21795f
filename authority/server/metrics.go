package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/gpumeter/gpumeter/protocol"
)

// batchCauses are the causes POST /v1/batches may answer (docs/protocol.md).
var batchCauses = []string{protocol.BodyTooLarge, protocol.Malformed, protocol.UnknownKey, protocol.RevokedKey,
	protocol.BadSignature, protocol.NodeMismatch, protocol.Fork, protocol.SequenceGap, protocol.ChainBroken,
	protocol.FutureWindow, protocol.OverWallTime, protocol.GPUNotRegistered, protocol.GPUClaimed, protocol.InvalidRecord,
	protocol.DuplicateKey, protocol.InvalidName, protocol.InvalidUUID, protocol.KindFields, protocol.InvalidValue,
	protocol.InvalidInventory, protocol.ModelMismatch, protocol.SliceMismatch, protocol.NotInLayout, protocol.OverGPUTime,
	protocol.BeforeActive, protocol.WindowTooLong, protocol.WindowNotEnded, protocol.NoInventory, protocol.SecondSigner}

// metrics are the authority's counters, on a registry of their own.
type metrics struct {
	reg      *prometheus.Registry
	accepted *prometheus.CounterVec
	rejected *prometheus.CounterVec
	records  prometheus.Counter
	// held counts held refusals (protocol.Held) by node and cause: the
	// node keeps such a batch and sends it again until the authority's
	// facts allow it (a GPU or key registered, its clock caught up).
	held      *prometheus.CounterVec
	forks     prometheus.Counter
	internals prometheus.Counter
	// unrecorded counts refusals the audit trail failed to keep.
	unrecorded prometheus.Counter
	// shed counts batches answered 503 overloaded (admission.go).
	shed prometheus.Counter
}

// counter is one of the authority's counters.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// counterVec is one of the authority's counters, by labels.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: counterVec("gpumeter_authority_batches_accepted_total",
			"Batches answered 200, by result: stored, or duplicate (an identical resend; nothing stored).", "result"),
		rejected: counterVec("gpumeter_authority_batches_rejected_total",
			"Batches refused, by protocol cause (the problem type suffix).", "cause"),
		records: counter("gpumeter_authority_records_stored_total", "Usage, idle and gap records stored."),
		held: counterVec("gpumeter_authority_batches_held_total",
			"Held refusals (the node keeps the batch and sends it again), by node (\"\" before the batch was authenticated) and cause.",
			"node", "cause"),
		forks: counter("gpumeter_authority_forks_flagged_total",
			"Batches from a second copy of a node (second-signer, or fork to an old agent) that flagged their node for review."),
		internals: counter("gpumeter_authority_internal_errors_total",
			"Requests that failed on the authority's side (answered 500)."),
		unrecorded: counter("gpumeter_authority_refusals_unrecorded_total",
			"Refused batches the audit trail failed to keep (the refusal was answered and logged all the same)."),
		shed: counter("gpumeter_authority_batches_shed_total",
			"Batches answered 503 overloaded with Retry-After, unread, because no ingest slot came free in time (the node sends them again)."),
	}
	// voucher_authority_build_info as node_exporter has it: version,
	// revision, branch, Go version, platform, from the build's -ldflags
	// (github.com/prometheus/common/version).
	m.reg.MustRegister(m.accepted, m.rejected, m.records, m.held, m.forks, m.internals, m.unrecorded, m.shed,
		versioncollector.NewCollector("voucher_authority"), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Start every series at 0 so rates and alerts see a cause before its
	// first occurrence.
	for _, r := range []string{"stored", "duplicate"} {
		m.accepted.WithLabelValues(r)
	}
	for _, c := range batchCauses {
		m.rejected.WithLabelValues(c)
		if protocol.Held(c) {
			m.held.WithLabelValues("", c)
		}
	}
	return m
}
