package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Change is one setting that differs between two configs.
type Change struct {
	// Field is the setting's dotted YAML path, e.g. "node.id".
	Field string
	// Old and New are the values, for messages; "" for lists and maps.
	Old, New string
}

func (c Change) String() string {
	if c.Old == "" && c.New == "" {
		return c.Field
	}
	return fmt.Sprintf("%s (%s → %s)", c.Field, c.Old, c.New)
}

// Diff lists the settings that differ between a and b, in the order of
// the Config struct. It compares what the file says, not where: moving a
// rule's lines or adding comments is no change. Every setting is compared,
// so a field added to Config later is covered without being listed here.
func Diff(a, b *Config) []Change {
	var out []Change
	diffStruct(reflect.ValueOf(*a), reflect.ValueOf(*b), "", &out)
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

func diffStruct(a, b reflect.Value, prefix string, out *[]Change) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		path := prefix + name
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct {
			diffStruct(av, bv, path+".", out)
			continue
		}
		if sameYAML(av.Interface(), bv.Interface()) {
			continue
		}
		c := Change{Field: path}
		switch {
		case f.Type == durationType:
			c.Old, c.New = av.Interface().(time.Duration).String(), bv.Interface().(time.Duration).String()
		case f.Type.Kind() == reflect.String:
			c.Old, c.New = fmt.Sprintf("%q", av.String()), fmt.Sprintf("%q", bv.String())
		case f.Type.Kind() == reflect.Slice || f.Type.Kind() == reflect.Map:
		default:
			c.Old, c.New = fmt.Sprint(av.Interface()), fmt.Sprint(bv.Interface())
		}
		*out = append(*out, c)
	}
}

// sameYAML compares two values as YAML would write them: exported fields
// only, so a rule's remembered line number is not part of it.
func sameYAML(a, b any) bool {
	ya, errA := yaml.Marshal(a)
	yb, errB := yaml.Marshal(b)
	if errA != nil || errB != nil {
		return reflect.DeepEqual(a, b)
	}
	return bytes.Equal(ya, yb)
}
