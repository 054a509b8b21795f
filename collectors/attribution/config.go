package attribution

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gpumeter/gpumeter/protocol"
)

// Config is the attribution section of the agent's configuration.
type Config struct {
	// Rules are tried in order; the first that matches a process wins.
	// Static `gpu` rules are the exception: they are checked per unit,
	// before any process rule (see the package documentation).
	Rules []Rule `yaml:"rules"`
}

// Rule maps a GPU, a cgroup path, a Unix user or a Kubernetes namespace to
// a tenant. Exactly one matcher field (GPU, Cgroup, CgroupPattern, User,
// UID, Namespace) is set.
//
// Rules decoded from YAML are validated by UnmarshalYAML, so a bad rule is
// reported with its line; rules built in Go are validated by New.
type Rule struct {
	// Name is optional and only used in logs and errors.
	Name string `yaml:"name"`
	// GPU is a static GPU-… or MIG-… UUID.
	GPU string `yaml:"gpu"`
	// Cgroup is a preset name: kubernetes, slurm, docker, containerd, systemd.
	Cgroup string `yaml:"cgroup"`
	// CgroupPattern is a Go regexp with named groups matched against each
	// path in /proc/<pid>/cgroup.
	CgroupPattern string `yaml:"cgroup_pattern"`
	// User is a Unix user name, resolved through <hostRoot>/etc/passwd.
	User string `yaml:"user"`
	// UID is a numeric Unix user id (nil: not set; 0 is root).
	UID *int `yaml:"uid"`
	// Namespace is a glob (path.Match: *, ?, [a-z]) over the Kubernetes
	// namespace of the pod the kubelet says holds the unit (see pods.go).
	Namespace string `yaml:"namespace"`
	// Tenant is a template: ${group} is replaced by the matcher's named
	// group of that name.
	Tenant string `yaml:"tenant"`

	// line is where the rule starts in its YAML file (0: built in Go).
	line int
}

// Fields of a rule, as spelled in YAML; used in errors.
const (
	fieldName          = "name"
	fieldGPU           = "gpu"
	fieldCgroup        = "cgroup"
	fieldCgroupPattern = "cgroup_pattern"
	fieldUser          = "user"
	fieldUID           = "uid"
	fieldTenant        = "tenant"
	fieldNamespace     = "namespace"
)

// RuleError is a rule that cannot be used: it names the rule, the field at
// fault and, when the rule came from YAML, the line.
type RuleError struct {
	Line  int    // 1-based line in the YAML document; 0 when unknown
	Name  string // the rule's name, "" when it has none
	Field string // the YAML field at fault, "" for the rule as a whole
	Err   error
}

func (e *RuleError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString("attribution rule")
	if e.Name != "" {
		fmt.Fprintf(&b, " %q", e.Name)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RuleError) Unwrap() error { return e.Err }

// Validate checks every rule as New would, without touching the host.
func (c Config) Validate() error {
	for i := range c.Rules {
		if _, err := compileRule(c.Rules[i], i); err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalYAML decodes a rule strictly (unknown or repeated keys are
// errors, even when the caller's decoder is not strict: yaml.v3 does not
// pass KnownFields down to custom unmarshalers) and validates it, so that
// every error carries the line of the offending field.
func (r *Rule) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.MappingNode {
		return &RuleError{Line: node.Line, Err: errors.New("must be a mapping of rule fields")}
	}
	var out Rule
	out.line = node.Line
	// The name goes into every error, so read it before anything else.
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == fieldName {
			out.Name = node.Content[i+1].Value
		}
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		fail := func(err error) error {
			return &RuleError{Line: v.Line, Name: out.Name, Field: k.Value, Err: err}
		}
		if prev, dup := lines[k.Value]; dup {
			return &RuleError{Line: k.Line, Name: out.Name, Field: k.Value,
				Err: fmt.Errorf("repeated (first at line %d)", prev)}
		}
		lines[k.Value] = v.Line
		var s string
		switch k.Value {
		case fieldName, fieldGPU, fieldCgroup, fieldCgroupPattern, fieldUser, fieldTenant, fieldNamespace:
			var err error
			if s, err = scalarString(v); err != nil {
				return fail(err)
			}
		case fieldUID:
			uid, err := scalarUID(v)
			if err != nil {
				return fail(err)
			}
			out.UID = &uid
			continue
		default:
			return &RuleError{Line: k.Line, Name: out.Name, Field: k.Value, Err: errors.New(
				"unknown field (want name, gpu, cgroup, cgroup_pattern, user, uid, namespace, tenant)")}
		}
		switch k.Value {
		case fieldName:
			out.Name = s
		case fieldGPU:
			out.GPU = s
		case fieldCgroup:
			out.Cgroup = s
		case fieldCgroupPattern:
			out.CgroupPattern = s
		case fieldUser:
			out.User = s
		case fieldTenant:
			out.Tenant = s
		case fieldNamespace:
			out.Namespace = s
		}
	}
	if _, err := compileRule(out, -1); err != nil {
		var re *RuleError
		if errors.As(err, &re) {
			// Point at the field's value; a missing field points at the rule.
			if l, ok := lines[re.Field]; ok {
				re.Line = l
			}
		}
		return err
	}
	*r = out
	return nil
}

func scalarString(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", errors.New("want a string")
	}
	if v.Tag == "!!null" {
		return "", nil
	}
	return v.Value, nil
}

func scalarUID(v *yaml.Node) (int, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		return 0, fmt.Errorf("want a non-negative integer, got %q", v.Value)
	}
	uid, err := strconv.ParseInt(v.Value, 0, 64)
	if err != nil || uid < 0 || uid > maxUID {
		return 0, fmt.Errorf("want an integer from 0 to %d, got %q", maxUID, v.Value)
	}
	return int(uid), nil
}

// maxUID is the largest valid uid: (uid_t)-1 is reserved as "no uid".
const maxUID = 1<<32 - 2

type ruleKind int

const (
	kindGPU ruleKind = iota
	kindCgroup
	kindUser
	kindUID
	kindPod
)

// compiledRule is a validated rule, ready to match.
type compiledRule struct {
	index  int
	name   string
	kind   ruleKind
	gpu    string
	paths  pathMatcher // kindCgroup
	user   string      // kindUser
	uid    uint32      // kindUID
	ns     string      // kindPod: the namespace glob
	tenant template
	method string
}

// userGroups are the template groups of user and uid rules, in the order
// their values are passed to template.expand.
var userGroups = []string{"user", "uid"}

// compileRule validates r; index is its position in Config.Rules, or -1.
func compileRule(r Rule, index int) (*compiledRule, error) {
	fail := func(field string, err error) error {
		return &RuleError{Line: r.line, Name: r.Name, Field: field, Err: err}
	}
	var set []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{fieldGPU, r.GPU != ""}, {fieldCgroup, r.Cgroup != ""},
		{fieldCgroupPattern, r.CgroupPattern != ""}, {fieldUser, r.User != ""},
		{fieldUID, r.UID != nil}, {fieldNamespace, r.Namespace != ""},
	} {
		if f.set {
			set = append(set, f.name)
		}
	}
	switch len(set) {
	case 0:
		return nil, fail("", errors.New("needs one matcher: gpu, cgroup, cgroup_pattern, user, uid or namespace"))
	case 1:
	default:
		return nil, fail(set[1], fmt.Errorf("only one matcher per rule, and %s is already set", set[0]))
	}
	c := &compiledRule{index: index, name: r.Name}
	var groups []string
	switch {
	case r.GPU != "":
		if !strings.HasPrefix(r.GPU, "GPU-") && !strings.HasPrefix(r.GPU, "MIG-") {
			return nil, fail(fieldGPU, fmt.Errorf("%q is not a GPU-… or MIG-… UUID", r.GPU))
		}
		// Units carry canonical UUIDs (the collector's): match the rule's
		// in that form too, whatever its case.
		c.kind, c.gpu, c.method = kindGPU, canonicalUnitUUID(r.GPU), string(MethodStatic)
	case r.Cgroup != "":
		p, ok := lookupPreset(r.Cgroup)
		if !ok {
			return nil, fail(fieldCgroup, fmt.Errorf("unknown preset %q (want one of %s)",
				r.Cgroup, strings.Join(presetNames(), ", ")))
		}
		c.kind, c.paths = kindCgroup, p
		c.method = string(MethodCgroup) + ":" + r.Cgroup
		groups = p.groups()
	case r.CgroupPattern != "":
		re, err := regexp.Compile(r.CgroupPattern)
		if err != nil {
			return nil, fail(fieldCgroupPattern, err)
		}
		p := newRegexMatcher(nil, []*regexp.Regexp{re})
		c.kind, c.paths = kindCgroup, p
		c.method = string(MethodCgroup) + ":pattern"
		groups = p.groups()
	case r.User != "":
		if strings.ContainsAny(r.User, ":\n") {
			return nil, fail(fieldUser, fmt.Errorf("%q is not a user name", r.User))
		}
		c.kind, c.user, c.method = kindUser, r.User, string(MethodUser)
		groups = userGroups
	case r.Namespace != "":
		if err := checkNamespaceGlob(r.Namespace); err != nil {
			return nil, fail(fieldNamespace, err)
		}
		c.kind, c.ns, c.method = kindPod, r.Namespace, string(MethodKubelet)
		groups = podGroups
	default:
		if *r.UID < 0 || *r.UID > maxUID {
			return nil, fail(fieldUID, fmt.Errorf("want an integer from 0 to %d, got %d", maxUID, *r.UID))
		}
		c.kind, c.uid, c.method = kindUID, uint32(*r.UID), string(MethodUser)
		groups = userGroups
	}
	if strings.TrimSpace(r.Tenant) == "" {
		return nil, fail(fieldTenant, errors.New("required: the tenant name or a template such as ${pod_uid}"))
	}
	t, err := parseTemplate(strings.TrimSpace(r.Tenant), groups)
	if err != nil {
		return nil, fail(fieldTenant, err)
	}
	if lit, ok := t.literal(); ok {
		if err := checkTenant(lit); err != nil {
			return nil, fail(fieldTenant, err)
		}
	}
	c.tenant = t
	return c, nil
}

// canonicalUnitUUID is uuid in canonical form when it has one, else as
// given (it then matches no unit the collector reports).
func canonicalUnitUUID(uuid string) string {
	canon := protocol.CanonicalGPUUUID
	if strings.HasPrefix(uuid, "MIG-") {
		canon = protocol.CanonicalMIGUUID
	}
	if c, err := canon(uuid); err == nil {
		return c
	}
	return uuid
}

// template is a tenant template: literal text and ${group} references,
// resolved to indexes into the matcher's group values at compile time so
// that expanding it does no lookups.
type template struct {
	parts []templatePart
}

type templatePart struct {
	lit   string
	group int // -1: lit is literal text
}

var groupName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func parseTemplate(s string, groups []string) (template, error) {
	var t template
	for s != "" {
		i := strings.Index(s, "${")
		if i < 0 {
			t.parts = append(t.parts, templatePart{lit: s, group: -1})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{lit: s[:i], group: -1})
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return template{}, fmt.Errorf("unterminated ${ in %q", s)
		}
		name := s[i+2 : i+end]
		if !groupName.MatchString(name) {
			return template{}, fmt.Errorf("${%s} is not a group reference", name)
		}
		g := -1
		for j, n := range groups {
			if n == name {
				g = j
				break
			}
		}
		if g < 0 {
			have := "none"
			if len(groups) > 0 {
				have = strings.Join(groups, ", ")
			}
			return template{}, fmt.Errorf("${%s}: the matcher has no group %q (its groups: %s)", name, name, have)
		}
		t.parts = append(t.parts, templatePart{group: g})
		s = s[i+end+1:]
	}
	return t, nil
}

// literal is the template's text when it names no group.
func (t template) literal() (string, bool) {
	if len(t.parts) == 1 && t.parts[0].group < 0 {
		return t.parts[0].lit, true
	}
	return "", false
}

// expand fills the template with the matcher's group values. It returns ""
// when a group it names is empty (absent from the path), which callers
// treat as "no match": a half-filled name such as "svc-" is never a tenant.
func (t template) expand(vals []string) string {
	if len(t.parts) == 1 && t.parts[0].group < 0 {
		return t.parts[0].lit
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.group < 0 {
			b.WriteString(p.lit)
			continue
		}
		if vals[p.group] == "" {
			return ""
		}
		b.WriteString(vals[p.group])
	}
	return strings.TrimSpace(b.String())
}
