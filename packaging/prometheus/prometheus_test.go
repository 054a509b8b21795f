package prometheus

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/internal/testenv"
)

const (
	rulesFile     = "alerts.yml"
	rulesTestFile = "alerts_test.yml"
	// The authority's rules, and its /metrics as its tests pin it.
	authorityRulesFile     = "authority-alerts.yml"
	authorityRulesTestFile = "authority-alerts_test.yml"
	authorityGolden        = "../../authority/server/testdata/metrics.golden"
	operationsDoc          = "../../docs/operations.md"
	// runbookBase is where every alert's runbook_url points, followed by
	// "#" and the alert's name in lower case: the GitHub anchor of a
	// heading that is the alert's name.
	runbookBase = "https://github.com/gpumeter/gpumeter/blob/main/docs/operations.md"
)

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ruleSets are the rule files (the agent's, the authority's) and their
// promtool unit tests: every test below runs on each.
var ruleSets = []struct{ rules, tests string }{
	{rulesFile, rulesTestFile},
	{authorityRulesFile, authorityRulesTestFile},
}

// loadRules reads the agent's rules.
func loadRules(t *testing.T) []rule {
	t.Helper()
	return loadRulesFile(t, rulesFile)
}

// decodeFile reads file and decodes it with unmarshal (json.Unmarshal or
// yaml.Unmarshal), failing the test with the file's name.
func decodeFile[T any](t *testing.T, file string, unmarshal func([]byte, any) error) T {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

func loadRulesFile(t *testing.T, file string) []rule {
	t.Helper()
	f := decodeFile[ruleFile](t, file, yaml.Unmarshal)
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no rule", file)
	}
	return out
}

// TestPromtoolCheckRules runs `promtool check rules`: the file parses, every
// expression is valid PromQL, every template parses.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, set := range ruleSets {
		out := runPromtool(t, promtool, "check", "rules", set.rules)
		want := "SUCCESS: " + strconv.Itoa(len(loadRulesFile(t, set.rules))) + " rules found"
		if !strings.Contains(string(out), want) {
			t.Errorf("promtool check rules %s: want %q in\n%s", set.rules, want, out)
		}
	}
}

// runPromtool runs promtool with args and returns its output; it fails t
// when promtool fails.
func runPromtool(t *testing.T, promtool string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(promtool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestPromtoolTestRules runs the alerts' unit tests (alerts_test.yml,
// authority-alerts_test.yml).
func TestPromtoolTestRules(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, set := range ruleSets {
		out := runPromtool(t, promtool, "test", "rules", set.tests)
		if !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool test rules %s: no SUCCESS in\n%s", set.tests, out)
		}
	}
}

// TestAuthorityRulesNameExportedMetrics: the authority's /metrics (as its
// golden file pins it) passes `promtool check metrics`, and every
// expression of authority-alerts.yml names a metric in it. (The agent's
// rules are checked against a running agent: e2e_test.go.)
func TestAuthorityRulesNameExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(authorityGolden)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := parseExposition(b)
	if err != nil {
		t.Fatalf("%s: %v", authorityGolden, err)
	}
	exported := map[string]dto.MetricType{}
	for name, f := range fams {
		exported[name] = f.GetType()
	}
	for _, r := range loadRulesFile(t, authorityRulesFile) {
		sels, err := selectors(r.Expr)
		if err != nil {
			t.Errorf("%s %s: %v", authorityRulesFile, r.Alert, err)
			continue
		}
		for _, s := range sels {
			if !isExported(s.name, exported) {
				t.Errorf("%s %s: %q names %s, which the authority does not export", authorityRulesFile, r.Alert, r.Expr, s.name)
			}
		}
	}
	promtool := testenv.Tool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on %s: %v\n%s", authorityGolden, err, out)
	}
}

// TestAlertsConventions checks what promtool does not: each alert has a
// severity an Alertmanager route can match, a summary, a description and a
// runbook under docs/operations.md; its name is unique across the rule
// files; and its file's tests have, for each alert, a case where it fires
// and one where it must not.
func TestAlertsConventions(t *testing.T) {
	all := map[string]bool{}
	for _, set := range ruleSets {
		t.Run(set.rules, func(t *testing.T) { checkConventions(t, set.rules, set.tests, all) })
	}
}

func checkConventions(t *testing.T, rulesFile, rulesTestFile string, all map[string]bool) {
	rules := loadRulesFile(t, rulesFile)
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("rule %q is not an alert: this file holds alerts only", r.Record)
			continue
		}
		if seen[r.Alert] || all[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert], all[r.Alert] = true, true
		if !strings.HasPrefix(r.Alert, "Gpumeter") {
			t.Errorf("alert %s: name must start with Gpumeter", r.Alert)
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s: no %s annotation", r.Alert, a)
			}
		}
		if want := runbookBase + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
	}

	// Every alert is tested both ways.
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert     string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, c := range tc.Cases {
			if !seen[c.Alert] {
				t.Errorf("%s: test %q names alert %s, which %s does not define", rulesTestFile, tc.Name, c.Alert, rulesFile)
			}
			if len(c.ExpAlerts) > 0 {
				fires[c.Alert] = true
			} else {
				quiet[c.Alert] = true
			}
		}
	}
	for a := range seen {
		if !fires[a] {
			t.Errorf("%s: no case where %s fires", rulesTestFile, a)
		}
		if !quiet[a] {
			t.Errorf("%s: no case where %s must not fire", rulesTestFile, a)
		}
	}

	// The runbooks exist once the operator guide does.
	doc, err := os.ReadFile(operationsDoc)
	if os.IsNotExist(err) {
		t.Logf("%s does not exist yet: runbook headings not checked", operationsDoc)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(doc))
	for a := range seen {
		if !anchors[strings.ToLower(a)] {
			t.Errorf("%s has no heading for the runbook of %s (want a heading \"%s\")", operationsDoc, a, a)
		}
	}
}

var headingRE = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$`)

// headingAnchors is the set of GitHub anchors of a Markdown file's
// headings: lower case, punctuation other than '-' and '_' dropped, spaces
// as '-'.
func headingAnchors(md string) map[string]bool {
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(md, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
				b.WriteRune(r)
			}
		}
		out[b.String()] = true
	}
	return out
}
