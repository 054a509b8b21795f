// Package prometheus holds no code: it is the home of the agent's
// Prometheus alert rules (alerts.yml, with their promtool unit tests in
// alerts_test.yml), the voucher authority's (authority-alerts.yml and
// authority-alerts_test.yml), and of the Go tests that keep them, and the
// Grafana dashboard in packaging/grafana, true to what the binaries export:
// promtool checks, a name check of every expression against the agent's
// /metrics and the authority's (authority/server/testdata/metrics.golden),
// and an end-to-end run of a real Prometheus scraping a real agent.
//
// The gpumeter package ships the agent's rules and the dashboard under
// /usr/share/gpumeter/, the voucher-authority package its rules under
// /usr/share/voucher-authority/prometheus/alerts.yml.
package prometheus
