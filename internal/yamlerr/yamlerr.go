// Package yamlerr gives yaml.v3's decoding errors the voice of every other
// configuration error here: "file:line: what is wrong". It is the one
// place that knows yaml.v3's message shapes.
package yamlerr

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one error of a file: "File:Line: Msg", or "File: Msg" when
// the line is unknown. Err is the error it was made from, if any (an
// UnmarshalYAML's own error), for errors.As.
type Error struct {
	File string
	Line int
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// List is the *Errors that err holds (one, or several joined), in order;
// nil when it holds none.
func List(err error) []*Error {
	var one *Error
	if errors.As(err, &one) && one == err { //nolint:errorlint // identity: err is itself the one *Error
		return []*Error{one}
	}
	var out []*Error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, List(e)...)
		}
	}
	return out
}

// join is errs as one error: the single *Error itself, or errors.Join
// of them (one per line).
func join(errs []*Error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// Rewrite turns yaml.v3's "yaml: line N: msg" (or each of a TypeError's
// messages) into "name:N: msg", one per line; a message without a line
// becomes "name: msg". An error that is not yaml's own (a custom
// unmarshaler's) stays reachable through errors.As.
func Rewrite(name string, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	wrapped := err
	if errors.As(err, &te) {
		msgs = append([]string(nil), te.Errors...)
		wrapped = nil
	} else if strings.HasPrefix(err.Error(), "yaml: ") {
		wrapped = nil
	}
	errs := make([]*Error, len(msgs))
	for i, m := range msgs {
		errs[i] = &Error{File: name, Msg: m, Err: wrapped}
		var n int
		if _, serr := fmt.Sscanf(m, "line %d:", &n); serr == nil {
			errs[i].Line = n
			errs[i].Msg = strings.TrimSpace(strings.SplitN(m, ":", 2)[1])
		}
	}
	return join(errs)
}
