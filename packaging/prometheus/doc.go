// Package prometheus holds no code: it is the home of the agent's
// Prometheus alert rules (alerts.yml, with their promtool unit tests in
// alerts_test.yml) and of the Go tests that keep them, and the Grafana
// dashboard in packaging/grafana, true to what the agent exports: promtool
// checks, a name check of every expression against the agent's /metrics,
// and an end-to-end run of a real Prometheus scraping a real agent.
//
// The packages ship the rules and the dashboard under /usr/share/gpumeter/.
package prometheus
