package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gpumeter/gpumeter/agent/config"
	"github.com/gpumeter/gpumeter/collectors/kubelet"
)

// document is one decoded manifest document.
type document struct {
	file string
	line int // where the document starts
	obj  any
}

// decodeStrict decodes every document of file into its Kubernetes API
// type, refusing unknown fields: the schema check CI runs without network
// (kubeconform would download the schemas).
func decodeStrict(t *testing.T, file string) []document {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []document
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	line := 1
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s:%d: %v", file, line, err)
		}
		start := line
		line += bytes.Count(raw, []byte("\n"))
		js, err := k8syaml.ToJSON(raw)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, start, err)
		}
		if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
			continue
		}
		obj, err := decodeOne(js)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, start, err)
		}
		docs = append(docs, document{file: file, line: start, obj: obj})
	}
	return docs
}

// decodeOne decodes one document (JSON) into the type its apiVersion and
// kind name, refusing unknown fields.
func decodeOne(js []byte) (any, error) {
	var head struct{ APIVersion, Kind string }
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, err
	}
	obj, err := newObject(head.APIVersion, head.Kind)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", head.APIVersion, head.Kind, err)
	}
	return obj, nil
}

// apiTypes make an empty object of each API type the manifests may use,
// by "apiVersion kind".
var apiTypes = map[string]func() any{
	"v1 Namespace":                            func() any { return &corev1.Namespace{} },
	"v1 ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1 ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1 Service":                              func() any { return &corev1.Service{} },
	"apps/v1 DaemonSet":                       func() any { return &appsv1.DaemonSet{} },
	"networking.k8s.io/v1 NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1 ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
}

func newObject(apiVersion, kind string) (any, error) {
	if mk, ok := apiTypes[apiVersion+" "+kind]; ok {
		return mk(), nil
	}
	return nil, fmt.Errorf("%s %s: no API type known to this test: add it to apiTypes", apiVersion, kind)
}

// manifests are every document of both files, by kind.
type manifests struct {
	cm  *corev1.ConfigMap
	ds  *appsv1.DaemonSet
	svc *corev1.Service
	sa  *corev1.ServiceAccount
	np  *networkingv1.NetworkPolicy
	sm  *monitoringv1.ServiceMonitor
}

func load(t *testing.T) manifests {
	t.Helper()
	var m manifests
	for _, f := range []string{"gpumeter.yaml", "servicemonitor.yaml"} {
		for _, d := range decodeStrict(t, f) {
			switch o := d.obj.(type) {
			case *corev1.ConfigMap:
				m.cm = o
			case *appsv1.DaemonSet:
				m.ds = o
			case *corev1.Service:
				m.svc = o
			case *corev1.ServiceAccount:
				m.sa = o
			case *networkingv1.NetworkPolicy:
				m.np = o
			case *monitoringv1.ServiceMonitor:
				m.sm = o
			}
		}
	}
	if m.cm == nil || m.ds == nil || m.svc == nil || m.sa == nil || m.np == nil || m.sm == nil {
		t.Fatalf("missing documents: %+v", m)
	}
	return m
}

func TestManifestsDecodeStrictly(t *testing.T) {
	load(t)
	// The check refuses what it should: a misspelt field, an unknown kind.
	for js, want := range map[string]string{
		`{"apiVersion":"v1","kind":"ConfigMap","binaryDatta":{}}`:                                      `unknown field "binaryDatta"`,
		`{"apiVersion":"apps/v1","kind":"DaemonSet","spec":{"template":{"spec":{"hostNetwrk":true}}}}`: `unknown field "hostNetwrk"`,
		`{"apiVersion":"apps/v1","kind":"Deployment"}`:                                                 "no API type known",
	} {
		if _, err := decodeOne([]byte(js)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", js, err, want)
		}
	}
}

// TestDaemonSetLeastPrivilege pins the security settings the docs promise.
func TestDaemonSetLeastPrivilege(t *testing.T) {
	m := load(t)
	spec := m.ds.Spec.Template.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("host network, PID or IPC namespace: not needed")
	}
	if spec.RuntimeClassName == nil || *spec.RuntimeClassName != "nvidia" {
		t.Error("runtimeClassName: want nvidia (NVML through the NVIDIA container toolkit)")
	}
	if spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("nodeSelector %v: want nvidia.com/gpu.present=true", spec.NodeSelector)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken ||
		m.sa.AutomountServiceAccountToken == nil || *m.sa.AutomountServiceAccountToken {
		t.Error("service account token mounted: the agent never calls the API")
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
			len(sc.Capabilities.Add) != 0 || (sc.Privileged != nil && *sc.Privileged) {
			t.Errorf("container %s: want a read-only root, no privilege escalation, every capability dropped, none added", c.Name)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: no memory limit", c.Name)
		}
	}
	agent := spec.Containers[0]
	env := map[string]string{}
	for _, e := range agent.Env {
		env[e.Name] = e.Value
	}
	if env["NVIDIA_VISIBLE_DEVICES"] != "all" {
		t.Error("NVIDIA_VISIBLE_DEVICES: want all, the agent meters every GPU")
	}
	if _, ok := agent.Resources.Limits["nvidia.com/gpu"]; ok {
		t.Error("the agent must not take a GPU from the tenants")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range agent.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	for path, want := range map[string]struct {
		host     string
		readOnly bool
	}{
		"/host/proc":                     {"/proc", true},
		"/host/etc/passwd":               {"/etc/passwd", true},
		"/var/lib/kubelet/pod-resources": {"/var/lib/kubelet/pod-resources", true},
		"/var/lib/gpumeter":              {"/var/lib/gpumeter", false},
	} {
		vm, ok := mounts[path]
		if !ok {
			t.Errorf("no mount at %s", path)
			continue
		}
		hp := vols[vm.Name].HostPath
		if hp == nil || hp.Path != want.host || vm.ReadOnly != want.readOnly {
			t.Errorf("mount %s: host path %+v read-only %v, want %s read-only %v", path, hp, vm.ReadOnly, want.host, want.readOnly)
		}
	}
	keys := vols[mounts["/etc/gpumeter/keys"].Name].Secret
	if keys == nil || keys.DefaultMode == nil || *keys.DefaultMode&0o077 != 0 {
		t.Errorf("keys: want a Secret with mode 0400 or 0600, got %+v", keys)
	}
	// The ServiceMonitor scrapes the Service's port, which is the agent's.
	if m.sm.Spec.Endpoints[0].Port != m.svc.Spec.Ports[0].Name ||
		m.svc.Spec.Ports[0].TargetPort != intstr.FromString(agent.Ports[0].Name) ||
		m.np.Spec.Ingress[0].Ports[0].Port.IntValue() != int(agent.Ports[0].ContainerPort) {
		t.Error("ServiceMonitor, Service, NetworkPolicy and container disagree on the metrics port")
	}
}

// TestConfigMapIsAnAgentConfig renders the ConfigMap's agent.yaml as the
// init container does and loads it with the agent's own loader: it must
// parse, read the mounted host root and kubelet socket, and attribute by
// namespace.
func TestConfigMapIsAnAgentConfig(t *testing.T) {
	m := load(t)
	text := strings.ReplaceAll(m.cm.Data["agent.yaml"], "__NODE_NAME__", "gpu-node-07")
	cfg, err := config.Parse("gpumeter.yaml#agent.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.ID != "gpu-node-07" || cfg.Signing.KeyFile != "/etc/gpumeter/keys/gpu-node-07.key" {
		t.Errorf("node %q key %q: the node's name is not in both", cfg.Node.ID, cfg.Signing.KeyFile)
	}
	if cfg.Attribution.HostRoot != "/host" || cfg.Attribution.Kubelet.Socket != kubelet.DefaultSocket {
		t.Errorf("host root %q socket %q: want the mounts /host and %s", cfg.Attribution.HostRoot, cfg.Attribution.Kubelet.Socket, kubelet.DefaultSocket)
	}
	if cfg.StateDir != "/var/lib/gpumeter" {
		t.Errorf("state_dir %q: want the hostPath mount", cfg.StateDir)
	}
	ns := 0
	for _, r := range cfg.Attribution.Rules {
		if r.Namespace != "" {
			ns++
		}
	}
	if ns == 0 {
		t.Error("no namespace rule")
	}
	if args := m.ds.Spec.Template.Spec.Containers[0].Args; strings.Join(args, " ") != "run --config /run/gpumeter/agent.yaml" {
		t.Errorf("args %v", args)
	}
}
