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

// Rewrite turns yaml.v3's "yaml: line N: msg" (or each of a TypeError's
// messages) into "name:N: msg", one per line; a message without a line
// becomes "name: msg".
func Rewrite(name string, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = append([]string(nil), te.Errors...)
	}
	for i, m := range msgs {
		var n int
		if _, serr := fmt.Sscanf(m, "line %d:", &n); serr == nil {
			msgs[i] = fmt.Sprintf("%s:%d:%s", name, n, strings.SplitN(m, ":", 2)[1])
		} else {
			msgs[i] = name + ": " + m
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}
