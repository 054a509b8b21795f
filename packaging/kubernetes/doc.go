// Package kubernetes holds the manifests that run the agent on Kubernetes
// (gpumeter.yaml: the DaemonSet and what it needs; servicemonitor.yaml) and
// their test: every document decoded strictly into the Kubernetes API types,
// offline, and the agent's config loaded by the agent's own loader.
package kubernetes
