package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, FormatJSON, slog.LevelInfo).Info("m", slog.Duration("wait", 90*time.Second))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["wait"] != "1m30s" {
		t.Fatalf("wait = %#v, want \"1m30s\"", line["wait"])
	}
	buf.Reset()
	New(&buf, FormatText, slog.LevelInfo).Info("m", slog.Duration("wait", time.Second))
	if !strings.Contains(buf.String(), "wait=1s") {
		t.Fatalf("text line %q", buf.String())
	}
}

func TestNotifyContextLogsTheSignal(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, FormatText, slog.LevelInfo)
	ctx, stop := NotifyContext(context.Background(), log, syscall.SIGUSR2)
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled by the signal")
	}
	stop() // the goroutine has logged before cancelling
	if !strings.Contains(buf.String(), `signal="user defined signal 2"`) {
		t.Fatalf("log %q does not name the signal", buf.String())
	}
}
