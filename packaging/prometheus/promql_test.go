package prometheus

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// selector is one metric name in a PromQL expression, with the text of its
// label matchers (between the braces, "" when it has none).
type selector struct {
	name     string
	matchers string
}

// promqlKeywords are the identifiers that are never metric names: binary
// operators, modifiers, and the number literals Inf and NaN.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "offset": true, "bool": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// labelListKeywords take a parenthesized list of label names, which must
// not be read as metrics.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// selectors lists the metric names an expression reads: identifiers that
// are not followed by '(' (functions, aggregations), not keywords, not
// label names (inside braces or after by/without/on/ignoring/group_*), not
// in strings, durations or numbers. Grafana variables ($job, ${x},
// $__rate_interval) are skipped. It is a small tokenizer, not a parser: a
// malformed expression gets an error only for unbalanced brackets or
// strings; Prometheus itself judges the rest (promtool and the end-to-end
// test run every expression).
func selectors(expr string) ([]selector, error) {
	var out []selector
	s := expr
	i := 0
	skipSpace := func(j int) int {
		for j < len(s) && strings.ContainsRune(" \t\r\n", rune(s[j])) {
			j++
		}
		return j
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '#': // comment to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, err := skipGroup(s, i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j, err := skipGroup(s, i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				j, err := skipGroup(s, i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = j
				continue
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			// Numbers and durations: 0.99, 3.6e6, 1e+3, 0x1F, 5m, 1h30m.
			for i < len(s) && (isIdent(s[i]) || s[i] == '.' ||
				((s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			next := skipSpace(j)
			i = j
			lower := strings.ToLower(word)
			if labelListKeywords[lower] {
				if next < len(s) && s[next] == '(' {
					k, err := skipGroup(s, next, '(', ')')
					if err != nil {
						return nil, err
					}
					i = k
				}
				continue
			}
			if promqlKeywords[lower] || (next < len(s) && s[next] == '(') || groupingFollows(s[next:]) {
				continue // an operator, or a function or aggregation
			}
			sel := selector{name: word}
			if next < len(s) && s[next] == '{' {
				k, err := skipGroup(s, next, '{', '}')
				if err != nil {
					return nil, err
				}
				sel.matchers = s[next+1 : k-1]
				i = k
			}
			out = append(out, sel)
		default:
			i++
		}
	}
	return out, nil
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d in %q", i, s)
}

// skipGroup returns the index after the bracket that closes the one at i,
// stepping over strings (a regexp matcher may hold any bracket).
func skipGroup(s string, i int, open, close byte) (int, error) {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"', '\'', '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = k - 1
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced %q at offset %d in %q", open, i, s)
}

// groupingFollows reports whether rest starts with "by" or "without" as a
// word: the identifier before it is an aggregation (sum by (x) (...)).
func groupingFollows(rest string) bool {
	for _, kw := range []string{"by", "without"} {
		if len(rest) > len(kw) && strings.EqualFold(rest[:len(kw)], kw) && !isIdent(rest[len(kw)]) {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdent(c byte) bool      { return isIdentStart(c) || isDigit(c) }

func TestSelectors(t *testing.T) {
	cases := []struct {
		name string
		expr string
		want []selector
	}{
		{"bare", `up`, []selector{{name: "up"}}},
		{"matchers", `up{job="gpumeter"} == 0`, []selector{{"up", `job="gpumeter"`}}},
		{"function and range", `rate(gpumeter_x_total{a=~"b|c"}[5m]) > 0`, []selector{{"gpumeter_x_total", `a=~"b|c"`}}},
		{"aggregation by before", `sum by (tenant, le) (rate(m_bucket[1m]))`, []selector{{name: "m_bucket"}}},
		{"aggregation without after", `sum(rate(a[1m])) without (gpu_uuid)`, []selector{{name: "a"}}},
		{"vector matching", `a * on (job, instance) group_left (index, model) b`, []selector{{name: "a"}, {name: "b"}}},
		{"group_left bare", `a / ignoring(tenant) group_left b`, []selector{{name: "a"}, {name: "b"}}},
		{"set operators and bool", `a and b or c unless d == bool 1`, []selector{{name: "a"}, {name: "b"}, {name: "c"}, {name: "d"}}},
		{"offset and numbers", `a offset 1h30m / 3.6e6 + 1e+3 - 0x1F + Inf - NaN`, []selector{{name: "a"}}},
		{"strings", `label_replace(a, "dst", "$1 and b", "src", "(.*)")`, []selector{{name: "a"}}},
		{"brace in regexp", `a{x=~"}{"} + b`, []selector{{"a", `x=~"}{"`}, {name: "b"}}},
		{"grafana variables", `a{i=~"$instance"}[$__rate_interval] + ${x}`, []selector{{"a", `i=~"$instance"`}}},
		{"subquery", `deriv((a + b)[30m:1m]) > 0`, []selector{{name: "a"}, {name: "b"}}},
		{"comment", "a # b\n+ c", []selector{{name: "a"}, {name: "c"}}},
		{"colon names", `job:gpumeter:sum`, []selector{{name: "job:gpumeter:sum"}}},
		{"space before paren", `sum (a) + vector (1)`, []selector{{name: "a"}}},
		{"no metric", `time() - vector(0)`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := selectors(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("selectors(%q)\n got %+v\nwant %+v", tc.expr, got, tc.want)
			}
		})
	}
	for _, bad := range []string{`a{x="y"`, `rate(a[5m)`, `a{x="y}`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%q): no error for an unbalanced expression", bad)
		}
	}
}
