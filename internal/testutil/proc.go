package testutil

import (
	"io"
	"os"
	"os/exec"
	"testing"
)

// SelfCommand runs this test binary again as the program under test: the
// package's TestMain runs main instead of the tests when env is "1".
func SelfCommand(env string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...) //nolint:gosec // G204: the test binary itself, with the test's own arguments
	cmd.Env = append(os.Environ(), env+"=1")
	return cmd
}

// StartReadingStderr starts cmd and returns its standard error to read;
// the caller must read it to EOF before it waits for cmd. It fails t when
// cmd cannot start.
func StartReadingStderr(t testing.TB, cmd *exec.Cmd) io.ReadCloser {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	return stderr
}
