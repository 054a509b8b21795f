package yamlerr_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/internal/yamlerr"
)

func TestRewrite(t *testing.T) {
	var v struct {
		A int `yaml:"a"`
	}
	dec := yaml.NewDecoder(strings.NewReader("a: 1\nb: 2\n"))
	dec.KnownFields(true)
	err := yamlerr.Rewrite("f.yaml", dec.Decode(&v))
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:2:") {
		t.Errorf("unknown field: %v, want f.yaml:2: ...", err)
	}
	err = yamlerr.Rewrite("f.yaml", yaml.Unmarshal([]byte("a: x\n"), &v))
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:1:") {
		t.Errorf("type error: %v, want f.yaml:1: ...", err)
	}
	err = yamlerr.Rewrite("f.yaml", yaml.Unmarshal([]byte("a: [\n"), &v))
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:") {
		t.Errorf("syntax error: %v, want f.yaml:...", err)
	}
}
