package attribution

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the whole error message
	}{
		{
			name: "bad regexp names line, rule and field",
			yaml: `rules:
  - name: ok
    gpu: GPU-1
    tenant: a
  - name: k8s
    cgroup_pattern: '/kubepods/(?P<pod>[a-z'
    tenant: ${pod}
`,
			want: "line 6: attribution rule \"k8s\": cgroup_pattern: error parsing regexp: missing closing ]: `[a-z`",
		},
		{
			name: "no matcher points at the rule",
			yaml: `rules:
  - name: lonely
    tenant: a
`,
			want: `line 2: attribution rule "lonely": needs one matcher: gpu, cgroup, cgroup_pattern, user, uid or namespace`,
		},
		{
			name: "two matchers point at the second",
			yaml: `rules:
  - gpu: GPU-1
    user: alice
    tenant: a
`,
			want: `line 3: attribution rule: user: only one matcher per rule, and gpu is already set`,
		},
		{
			name: "unknown preset",
			yaml: `rules:

  - cgroup: nomad
    tenant: a
`,
			want: `line 3: attribution rule: cgroup: unknown preset "nomad" (want one of kubernetes, slurm, docker, containerd, systemd)`,
		},
		{
			name: "template names a group the preset lacks",
			yaml: `rules:
  - name: slurm
    cgroup: slurm
    tenant: job-${job_id}
`,
			want: `line 4: attribution rule "slurm": tenant: ${job_id}: the matcher has no group "job_id" (its groups: job, step, uid)`,
		},
		{
			name: "template names a group the pattern lacks",
			yaml: `rules:
  - cgroup_pattern: '^/tenants/(?P<t>[a-z]+)/'
    tenant: ${tenant}
`,
			want: `line 3: attribution rule: tenant: ${tenant}: the matcher has no group "tenant" (its groups: t)`,
		},
		{
			name: "static rule has no groups",
			yaml: `rules:
  - gpu: MIG-1
    tenant: ${gpu}
`,
			want: `line 3: attribution rule: tenant: ${gpu}: the matcher has no group "gpu" (its groups: none)`,
		},
		{
			name: "missing tenant points at the rule",
			yaml: `rules:
  - gpu: GPU-1
    tenant: a
  - name: nobody
    user: nobody
`,
			want: `line 4: attribution rule "nobody": tenant: required: the tenant name or a template such as ${pod_uid}`,
		},
		{
			name: "empty tenant points at the field",
			yaml: `rules:
  - user: bob
    tenant: ""
`,
			want: `line 3: attribution rule: tenant: required: the tenant name or a template such as ${pod_uid}`,
		},
		{
			name: "unknown field",
			yaml: `rules:
  - user: bob
    tennant: b
`,
			want: `line 3: attribution rule: tennant: unknown field (want name, gpu, cgroup, cgroup_pattern, user, uid, namespace, tenant)`,
		},
		{
			name: "namespace glob that does not compile",
			yaml: `rules:
  - name: teams
    namespace: 'team-[a-'
    tenant: ${namespace}
`,
			want: `line 3: attribution rule "teams": namespace: "team-[a-" is not a glob: syntax error in pattern`,
		},
		{
			name: "namespace template names a group it lacks",
			yaml: `rules:
  - namespace: '*'
    tenant: ${pod_uid}
`,
			want: `line 3: attribution rule: tenant: ${pod_uid}: the matcher has no group "pod_uid" (its groups: namespace, pod, container)`,
		},
		{
			name: "repeated field",
			yaml: `rules:
  - user: bob
    tenant: a
    tenant: b
`,
			want: `line 4: attribution rule: tenant: repeated (first at line 3)`,
		},
		{
			name: "uid not a number",
			yaml: `rules:
  - uid: bob
    tenant: b
`,
			want: `line 2: attribution rule: uid: want a non-negative integer, got "bob"`,
		},
		{
			name: "uid negative",
			yaml: `rules:
  - uid: -3
    tenant: b
`,
			want: `line 2: attribution rule: uid: want an integer from 0 to 4294967294, got "-3"`,
		},
		{
			name: "gpu not a UUID",
			yaml: `rules:
  - gpu: 0
    tenant: b
`,
			want: `line 2: attribution rule: gpu: "0" is not a GPU-… or MIG-… UUID`,
		},
		{
			name: "unterminated template",
			yaml: `rules:
  - cgroup: docker
    tenant: c-${container_id
`,
			want: `line 3: attribution rule: tenant: unterminated ${ in "c-${container_id"`,
		},
		{
			name: "literal tenant is the reserved unattributed",
			yaml: `rules:
  - name: catch-all
    uid: 0
    tenant: Unattributed
`,
			want: `line 4: attribution rule "catch-all": tenant: tenant "Unattributed" is reserved: it names the usage no rule claims, never billable`,
		},
		{
			name: "static rule's tenant is the reserved unattributed, spaced",
			yaml: `rules:
  - gpu: GPU-1
    tenant: " unattributed "
`,
			want: `line 3: attribution rule: tenant: tenant "unattributed" is reserved: it names the usage no rule claims, never billable`,
		},
		{
			name: "literal tenant with an invisible character",
			yaml: `rules:
  - user: bob
    tenant: "acme\u200b-lab"
`,
			want: `line 3: attribution rule: tenant: tenant "acme\u200b-lab" has a format (bidirectional or invisible) character (U+200B) at byte 4`,
		},
		{
			name: "literal tenant too long",
			yaml: `rules:
  - user: bob
    tenant: ` + strings.Repeat("x", 129) + `
`,
			want: `line 3: attribution rule: tenant: tenant is 129 bytes, at most 128`,
		},
		{
			name: "rule not a mapping",
			yaml: `rules:
  - kubernetes
`,
			want: `line 2: attribution rule: must be a mapping of rule fields`,
		},
		{
			name: "unknown top-level key (decoder's strictness)",
			yaml: `rulez: []
`,
			want: "yaml: unmarshal errors:\n  line 1: field rulez not found in type attribution.Config",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeConfig(tt.yaml)
			if err == nil {
				t.Fatalf("decode: no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("decode error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestRuleErrorIsInspectable(t *testing.T) {
	_, err := decodeConfig("rules:\n  - name: x\n    cgroup_pattern: '('\n    tenant: t\n")
	var re *RuleError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *RuleError", err)
	}
	if re.Line != 3 || re.Name != "x" || re.Field != "cgroup_pattern" {
		t.Errorf("RuleError = line %d name %q field %q, want line 3 name x field cgroup_pattern", re.Line, re.Name, re.Field)
	}
}

func TestDecodeConfigValid(t *testing.T) {
	cfg, err := decodeConfig(`rules:
  - name: reserved
    gpu: GPU-5c9d0a8e-1f3b-4c7e-9a2d-6e8f0b1c2d3e
    tenant: acme
  - cgroup: kubernetes
    tenant: k8s-${pod_uid}
  - cgroup_pattern: '^/tenants\.slice/tenants-(?P<t>[a-z0-9]+)\.slice/'
    tenant: ${t}
  - user: alice
    tenant: ${user}-${uid}
  - uid: 0
    tenant: root
`)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(cfg.Rules) != 5 {
		t.Fatalf("got %d rules, want 5", len(cfg.Rules))
	}
	if r := cfg.Rules[4]; r.UID == nil || *r.UID != 0 {
		t.Errorf("uid: 0 decoded as %v, want 0 (root is a valid uid)", r.UID)
	}
	if got := cfg.Rules[1].line; got != 5 {
		t.Errorf("rule 1 line = %d, want 5", got)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestNewValidatesRulesBuiltInGo(t *testing.T) {
	uid := 5000000000
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"no matcher", Rule{Name: "x", Tenant: "t"}, "needs one matcher"},
		{"uid out of range", Rule{UID: &uid, Tenant: "t"}, "uid: want an integer"},
		{"bad preset", Rule{Cgroup: "k8s", Tenant: "t"}, `unknown preset "k8s"`},
		{"empty tenant", Rule{User: "alice", Tenant: "  "}, "tenant: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Rules: []Rule{tt.rule}}, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want one containing %q", err, tt.want)
			}
			if err != nil && strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("rule built in Go has no line, error says %q", err)
			}
		})
	}
}

func TestNewRejectsBadHostRoot(t *testing.T) {
	if _, err := New(Config{}, "/nonexistent/host/root"); err == nil {
		t.Error("New with a missing host root: no error")
	}
}

func TestTemplateExpand(t *testing.T) {
	groups := []string{"a", "b"}
	tests := []struct {
		name, tmpl string
		vals       []string
		want       string
	}{
		{"literal", "acme", []string{"x", "y"}, "acme"},
		{"one group", "${a}", []string{"x", "y"}, "x"},
		{"mixed", "p-${a}.${b}-s", []string{"x", "y"}, "p-x.y-s"},
		{"dollar without brace is literal", "$a-${b}", []string{"x", "y"}, "$a-y"},
		{"empty group gives empty tenant", "${a}", []string{"", "y"}, ""},
		{"one empty group of two gives empty tenant", "t-${a}-${b}", []string{"x", ""}, ""},
		{"unused empty group is fine", "t-${a}", []string{"x", ""}, "t-x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := parseTemplate(tt.tmpl, groups)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.tmpl, err)
			}
			if got := tm.expand(tt.vals); got != tt.want {
				t.Errorf("expand %q with %v = %q, want %q", tt.tmpl, tt.vals, got, tt.want)
			}
		})
	}
}
