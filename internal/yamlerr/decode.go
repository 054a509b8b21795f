package yamlerr

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decode decodes data (named name in messages) into v strictly: one
// document, no unknown fields, every value of the kind its field wants.
// Every error reads "name:LINE: PATH: message" in the words an operator
// uses (a duration, an integer, true or false), never Go's or YAML's
// type names, and a misspelt key is answered with the closest known one:
//
//	agent.yaml:7: metering.pol_interval: unknown field (did you mean poll_interval?)
//	agent.yaml:7: metering.poll_interval: "fast" is not a duration (e.g. 1s)
//
// All such errors of the file are reported at once, one per line, in
// line order. An empty file (no document, or only comments) returns an
// error that wraps io.EOF, so that a caller may accept it as "all
// defaults" or refuse it in its own words.
//
// The fields are checked by walking the YAML tree beside v's type before
// anything is decoded; a type with its own UnmarshalYAML (or
// UnmarshalText) is left to check itself, and its errors keep their own
// words, with the file's name in front.
func Decode(name string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return &Error{File: name, Msg: "empty file", Err: io.EOF}
		}
		return Rewrite(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return Rewrite(name, err)
		}
		return &Error{File: name, Line: extra.Line, Msg: "a second YAML document starts here: one document per file"}
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlerr.Decode: want a non-nil pointer, got %T", v)
	}
	w := walker{}
	if len(root.Content) > 0 {
		w.walk(root.Content[0], rv.Type().Elem(), "")
	}
	if len(w.errs) > 0 {
		sort.SliceStable(w.errs, func(i, j int) bool { return w.errs[i].Line < w.errs[j].Line })
		for _, e := range w.errs {
			e.File = name
		}
		return join(w.errs)
	}
	// The walk found nothing wrong; decode for real, still strictly, as
	// the backstop for what the walk leaves to custom unmarshalers.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(v); err != nil {
		return Rewrite(name, err)
	}
	return nil
}

type walker struct{ errs []*Error }

// fail records "PATH: message" at n's line; the file is named later.
func (w *walker) fail(n *yaml.Node, path, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if path != "" {
		msg = path + ": " + msg
	}
	w.errs = append(w.errs, &Error{Line: n.Line, Msg: msg})
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	// yaml.v2's UnmarshalYAML, which yaml.v3 still calls (exporter-toolkit's
	// and Prometheus' config types have it).
	oldUnmarshalerType = reflect.TypeOf((*interface {
		UnmarshalYAML(unmarshal func(any) error) error
	})(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	durationType        = reflect.TypeOf(time.Duration(0))
)

// selfDecoding reports whether t decodes itself: the walk leaves it be.
func selfDecoding(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(oldUnmarshalerType) || pt.Implements(oldUnmarshalerType) ||
		t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves the field as it is
	}
	if selfDecoding(t) {
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		return
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "%s, want a mapping of fields (key: value)", describe(n))
			return
		}
		fields, open := structFields(t)
		w.mapping(n, path, func(k, val *yaml.Node) {
			ft, ok := fields[k.Value]
			if !ok {
				if !open {
					w.fail(k, joinPath(path, k.Value), "unknown field%s", suggest(k.Value, fields))
				}
				return
			}
			w.walk(val, ft, joinPath(path, k.Value))
		})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "%s, want a mapping (key: value)", describe(n))
			return
		}
		w.mapping(n, path, func(k, val *yaml.Node) {
			w.walk(val, t.Elem(), joinPath(path, k.Value))
		})
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
			return // []byte from a (binary) scalar: yaml's to judge
		}
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "%s, want a list", describe(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "%s, want %s", describe(n), want(t))
			return
		}
		if isInt(t) && n.ShortTag() == "!!float" {
			// yaml.v3 would truncate 1.5 to 1; a count or an amount of
			// money must not lose its fraction silently.
			w.fail(n, path, "%s is not %s", shown(n), want(t))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			if n.ShortTag() == "!!int" && t != durationType && t.Kind() != reflect.Float32 && t.Kind() != reflect.Float64 {
				w.fail(n, path, "%s is out of range %s", shown(n), intRange(t))
				return
			}
			w.fail(n, path, "%s is not %s", shown(n), want(t))
		}
	}
}

// mapping calls each for every key and value of n, following merge keys
// (<<: *anchor) into the mappings they merge.
func (w *walker) mapping(n *yaml.Node, path string, each func(k, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			switch v.Kind {
			case yaml.MappingNode:
				w.mapping(v, path, each)
			case yaml.SequenceNode:
				for _, m := range v.Content {
					for m.Kind == yaml.AliasNode && m.Alias != nil {
						m = m.Alias
					}
					if m.Kind == yaml.MappingNode {
						w.mapping(m, path, each)
					}
				}
			}
			continue
		}
		each(k, v)
	}
}

// structFields maps t's YAML keys to their types, inlined structs
// included; open is true when an inlined map takes any other key.
func structFields(t reflect.Type) (fields map[string]reflect.Type, open bool) {
	fields = map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue // unexported: yaml ignores it
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		parts := strings.Split(tag, ",")
		key := parts[0]
		inline := false
		for _, o := range parts[1:] {
			if o == "inline" {
				inline = true
			}
		}
		if inline {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map {
				open = true
				continue
			}
			if ft.Kind() == reflect.Struct {
				sub, subOpen := structFields(ft)
				for k, v := range sub {
					fields[k] = v
				}
				open = open || subOpen
			}
			continue
		}
		if f.PkgPath != "" {
			continue
		}
		if key == "" {
			key = strings.ToLower(f.Name) // yaml.v3's default key
		}
		fields[key] = f.Type
	}
	return fields, open
}

// describe says what a node is, for "is a list, want ..." messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "is a mapping"
	case yaml.SequenceNode:
		return "is a list"
	default:
		return shown(n) + " is a single value"
	}
}

// shown is a scalar as the operator wrote it: quoted text, bare numbers.
func shown(n *yaml.Node) string {
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool":
		return v
	}
	return strconv.Quote(v)
}

// want names the kind of value a Go type takes, in an operator's words.
func want(t reflect.Type) string {
	if t == durationType {
		return "a duration (e.g. 1s)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a text value"
	}
	return "a value"
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t != durationType
	}
	return false
}

// intRange is the range of an integer type, in words.
func intRange(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if t.Bits() == 64 {
			return "(0 or more)"
		}
		return fmt.Sprintf("(0 to %d)", uint64(1)<<t.Bits()-1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("(%d to %d)", int64(-1)<<(t.Bits()-1), uint64(1)<<(t.Bits()-1)-1)
	}
	return ""
}

// suggest is " (did you mean KEY?)" for the known key closest to key by
// edit distance, when it is close enough to be a slip; otherwise the
// known keys, so the operator sees what is allowed.
func suggest(key string, fields map[string]reflect.Type) string {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	sort.Strings(known)
	best, bestD := "", -1
	for _, k := range known {
		if d := distance(strings.ToLower(key), k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && bestD <= max(1, min(3, len(best)/3)) {
		return " (did you mean " + best + "?)"
	}
	if len(known) == 0 {
		return ""
	}
	return " (known fields: " + strings.Join(known, ", ") + ")"
}

// distance is the edit distance of a and b in bytes, where swapping two
// neighbours (paht, path) is one edit, as it is one slip of the fingers
// (optimal string alignment distance).
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
