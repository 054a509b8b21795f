package main

import "testing"

// TestAgentRuntimeDefaults: the daemon lowers the GC target and runs on
// one P only when the environment sets none of the runtime's own
// variable, and no other command changes them.
func TestAgentRuntimeDefaults(t *testing.T) {
	unset := func(string) (string, bool) { return "", false }
	only := func(name string) func(string) (string, bool) {
		return func(k string) (string, bool) { return "7", k == name }
	}
	for _, f := range []struct {
		env  string
		fn   func([]string, func(string) (string, bool)) (int, bool)
		want int
	}{
		{"GOGC", agentGCPercent, 50},
		{"GOMAXPROCS", agentMaxProcs, 1},
	} {
		cases := []struct {
			name string
			args []string
			env  func(string) (string, bool)
			want int
			ok   bool
		}{
			{"run, unset", []string{"run", "--config", "a.yaml"}, unset, f.want, true},
			{"run, set", []string{"run"}, only(f.env), 0, false},
			{"run, another set", []string{"run"}, only("GOMEMLIMIT"), f.want, true},
			{"simulate", []string{"simulate", "--scenario", "s.yaml"}, unset, 0, false},
			{"no command", nil, unset, 0, false},
		}
		for _, c := range cases {
			if got, ok := f.fn(c.args, c.env); got != c.want || ok != c.ok {
				t.Errorf("%s, %s: = %d, %v; want %d, %v", f.env, c.name, got, ok, c.want, c.ok)
			}
		}
	}
}
