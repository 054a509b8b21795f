package inventory

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gpumeter/gpumeter/internal/yamlerr"
	"gopkg.in/yaml.v3"
)

//go:embed models.yaml
var modelsYAML []byte

// tableName names the embedded file in errors.
const tableName = "authority/inventory/models.yaml"

// maxWatts bounds both power figures: far above any board, and small
// enough that watts → milliwatts cannot overflow.
const maxWatts = 100_000

// table is the embedded model table, loaded once. A broken table is a
// programming error that the package's tests catch, hence the panic.
var table = mustLoad()

type modelTable struct {
	models []Model        // sorted by ID
	byKey  map[string]int // normalized id or NVML name → index in models
}

func mustLoad() *modelTable {
	t, err := parse(tableName, modelsYAML)
	if err != nil {
		panic("inventory: " + err.Error())
	}
	return t
}

// The file's shape. Watts are whole watts in the file, milliwatts in Model.
type fileYAML struct {
	Models []modelYAML `yaml:"models"`
}

type modelYAML struct {
	ID             string                 `yaml:"id"`
	Names          []string               `yaml:"names"`
	MIG            bool                   `yaml:"mig"`
	TotalSlices    int                    `yaml:"total_slices"`
	Profiles       map[string]profileYAML `yaml:"mig_profiles"`
	IdleFloorWatts int64                  `yaml:"idle_floor_watts"`
	MaxPowerWatts  int64                  `yaml:"max_power_watts"`
	Sources        []string               `yaml:"sources"`
}

type profileYAML struct {
	Slices       int `yaml:"slices"`
	MaxInstances int `yaml:"max_instances"`
}

var (
	idPattern = regexp.MustCompile(`^[A-Z0-9]+(-[A-Z0-9]+)*$`)
	// A base GPU instance profile as the agent names it: "3g.40gb".
	profilePattern = regexp.MustCompile(`^([1-9][0-9]*)g\.[1-9][0-9]*gb$`)
)

// parse decodes a model table strictly (unknown keys are errors) and
// validates it; errors name the file, the line and the field.
func parse(name string, data []byte) (*modelTable, error) {
	var f fileYAML
	if err := yamlerr.Decode(name, data, &f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty model table", name)
		}
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	items := modelNodes(&root)
	if len(f.Models) == 0 {
		return nil, fmt.Errorf("%s: models: no models", name)
	}
	t := &modelTable{byKey: map[string]int{}}
	owner := map[string]int{} // normalized id or name → index of the entry that has it
	for i, raw := range f.Models {
		var item *yaml.Node
		if i < len(items) {
			item = items[i]
		}
		fail := func(path []string, format string, args ...any) error {
			return fmt.Errorf("%s:%d: models[%d] (%s): %s: %s",
				name, nodeLine(item, path), i, raw.ID, strings.Join(path, "."), fmt.Sprintf(format, args...))
		}
		m, err := raw.model(fail)
		if err != nil {
			return nil, err
		}
		for _, k := range append([]string{m.ID}, m.Names...) {
			key := normalize(k)
			if other, dup := owner[key]; dup {
				at := field("names")
				if k == m.ID {
					at = field("id")
				}
				if other == i {
					return nil, fail(at, "%q is listed twice", k)
				}
				return nil, fail(at, "%q is already models[%d]'s (%s)", k, other, f.Models[other].ID)
			}
			owner[key] = i
		}
		t.models = append(t.models, m)
	}
	sort.Slice(t.models, func(a, b int) bool { return t.models[a].ID < t.models[b].ID })
	for i, m := range t.models {
		for _, k := range append([]string{m.ID}, m.Names...) {
			t.byKey[normalize(k)] = i
		}
	}
	return t, nil
}

// model validates one entry and converts it; fail names the field.
func (r modelYAML) model(fail failFunc) (Model, error) {
	if !idPattern.MatchString(r.ID) {
		return Model{}, fail(field("id"), "%q is not upper-case letters, digits and single dashes", r.ID)
	}
	if len(r.Names) == 0 {
		return Model{}, fail(field("names"), "no NVML names")
	}
	for _, n := range r.Names {
		if n == "" || strings.TrimSpace(n) != n {
			return Model{}, fail(field("names"), "%q is empty or has surrounding spaces", n)
		}
	}
	if len(r.Sources) == 0 {
		return Model{}, fail(field("sources"), "no sources for the figures")
	}
	for _, s := range r.Sources {
		if strings.TrimSpace(s) == "" {
			return Model{}, fail(field("sources"), "empty source")
		}
	}
	if r.IdleFloorWatts <= 0 || r.IdleFloorWatts > maxWatts {
		return Model{}, fail(field("idle_floor_watts"), "%d W is outside 1-%d W", r.IdleFloorWatts, maxWatts)
	}
	if r.MaxPowerWatts <= r.IdleFloorWatts || r.MaxPowerWatts > maxWatts {
		return Model{}, fail(field("max_power_watts"), "%d W is not above idle_floor_watts (%d W) or above %d W",
			r.MaxPowerWatts, r.IdleFloorWatts, maxWatts)
	}
	if err := r.checkMIG(fail); err != nil {
		return Model{}, err
	}
	m := Model{
		ID:                  r.ID,
		Names:               slices.Clone(r.Names),
		MIG:                 r.MIG,
		TotalSlices:         r.TotalSlices,
		IdleFloorMilliwatts: r.IdleFloorWatts * 1000,
		MaxPowerMilliwatts:  r.MaxPowerWatts * 1000,
		Sources:             slices.Clone(r.Sources),
	}
	if r.MIG {
		m.Profiles = make(map[string]Profile, len(r.Profiles))
		for n, p := range r.Profiles {
			m.Profiles[n] = Profile(p)
		}
	}
	return m, nil
}

func (r modelYAML) checkMIG(fail failFunc) error {
	if !r.MIG {
		if r.TotalSlices != 0 || len(r.Profiles) != 0 {
			return fail(field("mig"), "false, yet total_slices or mig_profiles are given")
		}
		return nil
	}
	if r.TotalSlices < 1 {
		return fail(field("total_slices"), "%d: a MIG model has at least 1 slice", r.TotalSlices)
	}
	if len(r.Profiles) == 0 {
		return fail(field("mig_profiles"), "a MIG model lists its profiles")
	}
	largest := 0
	for _, n := range slices.Sorted(maps.Keys(r.Profiles)) {
		p := r.Profiles[n]
		sm := profilePattern.FindStringSubmatch(n)
		if sm == nil {
			return fail(field("mig_profiles", n), "not a base profile name like 3g.40gb")
		}
		if lead, _ := strconv.Atoi(sm[1]); lead != p.Slices {
			return fail(field("mig_profiles", n), "slices %d, the name says %d", p.Slices, lead)
		}
		if p.Slices > r.TotalSlices {
			return fail(field("mig_profiles", n), "%d slices, more than the GPU's %d", p.Slices, r.TotalSlices)
		}
		if p.MaxInstances < 1 || p.Slices*p.MaxInstances > r.TotalSlices {
			return fail(field("mig_profiles", n), "max_instances %d is below 1 or needs more than the GPU's %d slices",
				p.MaxInstances, r.TotalSlices)
		}
		largest = max(largest, p.Slices)
	}
	if largest != r.TotalSlices {
		return fail(field("mig_profiles"), "the largest profile has %d slices, not the whole GPU's %d", largest, r.TotalSlices)
	}
	return nil
}

// failFunc builds the error for a field of one model (path: the keys from
// the model's entry down to the field).
type failFunc func(path []string, format string, args ...any) error

func field(path ...string) []string { return path }

// modelNodes finds the mapping node of each entry under "models", for
// line numbers; nil where the document has another shape (the strict
// decode has refused those already).
func modelNodes(root *yaml.Node) []*yaml.Node {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "models" && doc.Content[i+1].Kind == yaml.SequenceNode {
			return doc.Content[i+1].Content
		}
	}
	return nil
}

// nodeLine is the line of the value at path (mapping keys) under a
// model's entry, or of the deepest part of it that exists.
func nodeLine(item *yaml.Node, path []string) int {
	if item == nil {
		return 0
	}
	n := item
walk:
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			break
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				n = n.Content[i+1]
				continue walk
			}
		}
		break
	}
	return n.Line
}

// normalize is the form ids and names are compared in: NVML names are
// matched whatever their case and surrounding spaces.
func normalize(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
