package server

import (
	"net/http"
	"time"

	"github.com/gpumeter/gpumeter/authority/coverage"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/protocol"
)

// CoverageReport is the answer of GET /v1/admin/coverage (and the CLI's
// coverage): per GPU, how much of the period since its registration and
// before Now its records cover, the holes, and the sums over the GPUs.
type CoverageReport struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Now is when it was measured: time after it is not expected yet.
	Now            time.Time           `json:"now"`
	GPUs           []store.GPUCoverage `json:"coverage"`
	ExpectedMillis int64               `json:"expected_ms"`
	CoveredMillis  int64               `json:"covered_ms"`
}

// NewCoverageReport sums gpus into a report.
func NewCoverageReport(f store.CoverageFilter, gpus []store.GPUCoverage) CoverageReport {
	rep := CoverageReport{From: f.From.UTC(), To: f.To.UTC(), Now: f.Now.UTC(), GPUs: nonNil(gpus)}
	for _, g := range gpus {
		rep.ExpectedMillis += g.ExpectedMillis
		rep.CoveredMillis += g.CoveredMillis
	}
	return rep
}

// NewCoverageFilter reads a coverage query's selectors (provider, node, gpu,
// entity; "" = any) into f; the GPU UUID is taken in its canonical form.
func NewCoverageFilter(provider, node, gpu, entity string, from, to, now time.Time) (store.CoverageFilter, error) {
	f := store.CoverageFilter{Provider: provider, Node: node, Entity: entity, From: from, To: to, Now: now}
	if gpu != "" {
		g, err := protocol.CanonicalGPUUUID(gpu)
		if err != nil {
			return store.CoverageFilter{}, err
		}
		f.GPU = g
	}
	return f, nil
}

func (a *Admin) coverage(w http.ResponseWriter, r *http.Request) {
	from, to, format, ok := period(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f, err := NewCoverageFilter(q.Get("provider"), q.Get("node"), q.Get("gpu"), q.Get("entity"), from, to, time.Now())
	if err != nil {
		protocol.WriteProblem(w, protocol.NewProblem(protocol.BadRequest, "gpu: "+err.Error()))
		return
	}
	gpus, err := a.st.Coverage(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", CSVContentType)
		w.Header().Set("Content-Disposition", `attachment; filename="coverage.csv"`)
		w.WriteHeader(http.StatusOK)
		// A write error here is the client gone: nothing left to tell it.
		_ = coverage.WriteCSV(w, gpus)
		return
	}
	answer(w, http.StatusOK, NewCoverageReport(f, gpus))
}
