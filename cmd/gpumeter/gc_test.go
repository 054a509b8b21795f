package main

import "testing"

// TestAgentGCPercent: the daemon lowers the GC target only when the
// environment sets none, and no other command changes it.
func TestAgentGCPercent(t *testing.T) {
	unset := func(string) (string, bool) { return "", false }
	set := func(k string) (string, bool) { return "200", k == "GOGC" }
	cases := []struct {
		name string
		args []string
		env  func(string) (string, bool)
		want int
		ok   bool
	}{
		{"run, GOGC unset", []string{"run", "--config", "a.yaml"}, unset, 50, true},
		{"run, GOGC set", []string{"run"}, set, 0, false},
		{"simulate", []string{"simulate", "--scenario", "s.yaml"}, unset, 0, false},
		{"no command", nil, unset, 0, false},
	}
	for _, c := range cases {
		if got, ok := agentGCPercent(c.args, c.env); got != c.want || ok != c.ok {
			t.Errorf("%s: agentGCPercent = %d, %v; want %d, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
