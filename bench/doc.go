// Package bench is gpumeter's bench suite: `bench/run` measures the agent
// and the authority beside a peer or a limit for each figure and prints
// the table of docs/performance.md.
//
// This directory holds the Go benchmarks the script runs (signing beside a
// bare Ed25519 loop, authority ingest beside a bare INSERT; they run only
// with -bench), and under cmd/ the tools for what a Go benchmark cannot
// measure: procwatch (the agent's and node_exporter's CPU and memory),
// drain (a day's backlog into a real authority process), fleet (many
// nodes against one authority, with a lost/doubled check) and table (the
// medians). Every tool prints Go benchmark lines, so one parser reads all.
//
// Nothing here is imported by the agent or the authority.
package bench
