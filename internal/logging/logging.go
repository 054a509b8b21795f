// Package logging builds the slog loggers of both binaries, so that their
// lines look alike: one handler per process (text or JSON), durations
// written as text ("1m30s", not nanoseconds), and a line when a signal
// stops the process.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
)

// Formats a logger may write.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing format (FormatText or FormatJSON; anything
// else is text) to w at level, which may be changed later (a reload).
func New(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	if format == FormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// replaceAttr writes a time.Duration as its String form: JSON would
// otherwise carry an integer of nanoseconds that no reader expects.
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// ParseLevel parses a configured level name (debug, info, warn, error).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// NotifyContext is signal.NotifyContext that logs which signal arrived,
// once, before the context is cancelled: an operator reading the log sees
// why the process stopped.
func NotifyContext(parent context.Context, log *slog.Logger, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		select {
		case s := <-ch:
			log.Info("signal received; stopping", slog.String("signal", s.String()))
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel()
	}
}
