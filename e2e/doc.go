// Package e2e holds the end-to-end tests: the real gpumeter and
// voucher-authority binaries, built once per test run, run as separate
// processes on a simulated node and a real database, and put through the
// faults an operator's fleet meets (a refusal, a crash, a damaged spool, a
// full disk, a cloned node). Each test ends by checking that the authority
// holds exactly the usage the agent metered, nothing lost or doubled, apart
// from what the fault documents (a gap with its reason).
//
// The package has no code outside its tests; harness_test.go is the
// harness: Authority (serve, its CLI, what it stored), Node (key,
// registration, config, the agent process, what it metered), Proc (a
// process with its log) and the comparison.
package e2e
