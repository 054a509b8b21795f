package testutil

import (
	"cmp"
	"fmt"
	"strings"
)

// SimAgent is the configuration of an agent that meters a simulated node
// at 600 times real speed, polls every second into one-minute windows
// (holding a sample at most a minute) and delivers to an authority: the
// set-up of the delivery tests of the agent and the gpumeter command.
type SimAgent struct {
	Node, Provider string
	Scenario       string   // path of the scenario file
	Speed          int      // simulated seconds per real second; 0: 600
	Rules          []string // attribution rules, one YAML flow mapping each; none: no attribution section
	Authority      string   // the authority's URL
	Timeout        string   // authority.timeout, e.g. "1s"
	AuthorityExtra string   // more authority fields, e.g. "log_key: K"
	RecordsFile    string   // output.records_file; "": none
	StateDir       string
	Extra          string // more top-level YAML, each line ending in a newline
}

// YAML is the configuration file's text.
func (c SimAgent) YAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: {id: %s, provider: %s}\n", c.Node, c.Provider)
	fmt.Fprintf(&b, "devices: {source: simulated, scenario: %q, speed: %d}\n", c.Scenario, cmp.Or(c.Speed, 600))
	b.WriteString("metering: {poll_interval: 1s, window: 1m, max_hold: 1m}\n")
	if len(c.Rules) > 0 {
		b.WriteString("attribution:\n  rules:\n")
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "    - %s\n", r)
		}
	}
	b.WriteString("http: {listen: \"127.0.0.1:0\"}\n")
	extra := ""
	if c.AuthorityExtra != "" {
		extra = ", " + c.AuthorityExtra
	}
	fmt.Fprintf(&b, "authority: {url: %q, timeout: %s%s}\n", c.Authority, c.Timeout, extra)
	if c.RecordsFile != "" {
		fmt.Fprintf(&b, "output: {records_file: %q}\n", c.RecordsFile)
	}
	b.WriteString(c.Extra)
	fmt.Fprintf(&b, "state_dir: %q\n", c.StateDir)
	return b.String()
}
