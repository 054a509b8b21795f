// Package exitcode holds the exit statuses both binaries use, so that a
// service manager can tell a configuration error (restarting cannot fix
// it) from a crash (restarting should).
//
// The numbers are sysexits.h's. 2 is deliberately not used: the Go runtime
// exits 2 on an unrecovered panic and on a fatal error, and those must be
// restarted; a usage or configuration error must not be.
package exitcode

const (
	// OK: success.
	OK = 0
	// Failure: a runtime failure (store unreachable, a refused request):
	// another try may succeed.
	Failure = 1
	// Usage: a bad command line (EX_USAGE).
	Usage = 64
	// Config: the configuration (file, key, directories, TLS files) is
	// unusable; nothing was started (EX_CONFIG). Only configuration
	// errors exit with it; the units' RestartPreventExitStatus names it.
	Config = 78
)
