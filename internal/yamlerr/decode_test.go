package yamlerr_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/internal/yamlerr"
)

type metering struct {
	PollInterval time.Duration `yaml:"poll_interval"`
	Window       time.Duration `yaml:"window"`
}

type rule struct {
	User   string `yaml:"user"`
	Tenant string `yaml:"tenant"`
}

type common struct {
	Level string `yaml:"level"`
}

type selfChecked struct{ v string }

func (s *selfChecked) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "bad" {
		return errors.New("self-checked: bad value")
	}
	s.v = n.Value
	return nil
}

type testConfig struct {
	Metering metering          `yaml:"metering"`
	Rules    []rule            `yaml:"rules"`
	Labels   map[string]int    `yaml:"labels"`
	Enabled  bool              `yaml:"enabled"`
	Count    int               `yaml:"count"`
	Small    uint8             `yaml:"small"`
	Ratio    float64           `yaml:"ratio"`
	Name     string            `yaml:"name"`
	Ptr      *metering         `yaml:"ptr"`
	Self     selfChecked       `yaml:"self"`
	Any      map[string]any    `yaml:"any"`
	Extra    map[string]string `yaml:",inline"`
	common   `yaml:",inline"`
}

type closed struct {
	Metering metering `yaml:"metering"`
	Common   common   `yaml:",inline"`
	Count    int      `yaml:"count"`
}

// The wording is the point: each message names the file, the line, the
// field's path and what was wanted in an operator's words, and none
// shows a Go or YAML type name.
func TestDecodeWording(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"misspelt key", "metering:\n  pol_interval: 1s\n",
			"f.yaml:2: metering.pol_interval: unknown field (did you mean poll_interval?)"},
		{"swapped letters", "metering:\n  widnow: 1s\n",
			"f.yaml:2: metering.widnow: unknown field (did you mean window?)"},
		{"unknown key far from all", "metering:\n  colour: red\n",
			"f.yaml:2: metering.colour: unknown field (known fields: poll_interval, window)"},
		{"top-level misspelt", "cont: 3\n",
			"f.yaml:1: cont: unknown field (did you mean count?)"},
		{"inline field known", "level: x\nmetering: {}\nlevl: 1\n",
			"f.yaml:3: levl: unknown field (did you mean level?)"},
		{"not a duration", "metering:\n  poll_interval: fast\n",
			`f.yaml:2: metering.poll_interval: "fast" is not a duration (e.g. 1s)`},
		{"bare number duration", "metering:\n  window: 5\n",
			`f.yaml:2: metering.window: 5 is not a duration (e.g. 1s)`},
		{"not an integer", "count: abc\n", `f.yaml:1: count: "abc" is not an integer`},
		{"float for integer", "count: 1.5\n", `f.yaml:1: count: 1.5 is not an integer`},
		{"out of range", "small: 300\n", `f.yaml:1: small: 300 is out of range (0 to 255)`},
		{"not a bool", "enabled: maybe\n", `f.yaml:1: enabled: "maybe" is not true or false`},
		{"not a number", "ratio: lots\n", `f.yaml:1: ratio: "lots" is not a number`},
		{"list for a value", "count: [1]\n", `f.yaml:1: count: is a list, want an integer`},
		{"value for a mapping", "metering: 1s\n", `f.yaml:1: metering: "1s" is a single value, want a mapping of fields (key: value)`},
		{"value for a list", "rules: alice\n", `f.yaml:1: rules: "alice" is a single value, want a list`},
		{"in a list", "rules:\n  - user: alice\n    tennant: a\n",
			"f.yaml:3: rules[0].tennant: unknown field (did you mean tenant?)"},
		{"map value", "labels:\n  a: 1\n  b: x\n", `f.yaml:3: labels.b: "x" is not an integer`},
		{"through a pointer", "ptr:\n  window: soon\n", `f.yaml:2: ptr.window: "soon" is not a duration (e.g. 1s)`},
		{"self-checked keeps its words", "self: bad\n", "f.yaml: self-checked: bad value"},
		{"second document", "count: 1\n---\ncount: 2\n", "f.yaml:2: a second YAML document starts here: one document per file"},
		{"syntax", "metering: [\n", "f.yaml:"},
		{"merged mapping checked", "base: &b\n  poll_interval: 1s\nmetering:\n  <<: *b\n  windw: 1m\n",
			"f.yaml:1: base: unknown field (known fields: count, level, metering)\nf.yaml:5: metering.windw: unknown field (did you mean window?)"},
		{"all errors in line order", "count: x\nmetering:\n  window: y\n",
			"f.yaml:1: count: \"x\" is not an integer\nf.yaml:3: metering.window: \"y\" is not a duration (e.g. 1s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if strings.Contains(tc.name, "merged") || tc.name == "top-level misspelt" || strings.Contains(tc.name, "inline field") || tc.name == "all errors in line order" {
				var c closed
				err = yamlerr.Decode("f.yaml", []byte(tc.body), &c)
			} else {
				var c testConfig
				err = yamlerr.Decode("f.yaml", []byte(tc.body), &c)
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if tc.name == "syntax" {
				if !strings.HasPrefix(err.Error(), tc.want) {
					t.Fatalf("got %q, want it to start with %q", err, tc.want)
				}
				return
			}
			if err.Error() != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", err, tc.want)
			}
			for _, goName := range []string{"time.Duration", "!!str", "!!int", "yamlerr_test.", "uint8", "float64", "not found in type"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("%q shows a Go or YAML type name %q", err, goName)
				}
			}
		})
	}
}

func TestDecodeGood(t *testing.T) {
	var c testConfig
	c.Metering.Window = time.Minute // a default the file does not touch
	body := "metering:\n  poll_interval: 500ms\nrules:\n  - {user: alice, tenant: a}\nlabels: {x: 1}\nenabled: true\ncount: 3\nsmall: 255\n" +
		"ratio: 0.5\nname: 12\nself: ok\nany: {k: [1, 2]}\nother: free\nlevel: info\nptr: ~\n"
	if err := yamlerr.Decode("f.yaml", []byte(body), &c); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %v %v %v %v %v %v %v %q %q %q %q", c.Metering.PollInterval, c.Metering.Window, c.Rules, c.Labels,
		c.Enabled, c.Count, c.Small, c.Ratio, c.Name, c.Self.v, c.Extra["other"], c.Level)
	want := `500ms 1m0s [{alice a}] map[x:1] true 3 255 0.5 "12" "ok" "free" "info"`
	if got != want {
		t.Errorf("decoded %s, want %s", got, want)
	}
}

func TestDecodeEmptyWrapsEOF(t *testing.T) {
	for _, body := range []string{"", "# only a comment\n"} {
		var c testConfig
		err := yamlerr.Decode("f.yaml", []byte(body), &c)
		if !errors.Is(err, io.EOF) || !strings.HasPrefix(err.Error(), "f.yaml: ") {
			t.Errorf("%q: %v, want f.yaml: ... wrapping io.EOF", body, err)
		}
	}
}
