package attribution

import (
	"maps"
	"strings"
	"testing"
)

const (
	hexA = "06ea17a8981d25b0315ff17bd1ebad3d95c15a3f8b764eaadb93612d9b61a54e"
	hexB = "b7933ed6180d9e2895a9d2df885e2a8b92e998a3c16297581f5b8698daacf492"
)

// TestPresets runs each preset over paths as the kernel writes them on
// real nodes, and over look-alikes that must not match.
func TestPresets(t *testing.T) {
	tests := []struct {
		preset string
		path   string
		want   map[string]string // nil: no match
	}{
		// kubernetes, systemd driver (the default since 1.22 with kubeadm)
		{"kubernetes", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_8c1b_4a57_9f1e_2b8d7c6a5e41.slice/cri-containerd-" + hexA + ".scope",
			map[string]string{"qos": "burstable", "pod_uid": "3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41", "container_id": hexA}},
		{"kubernetes", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f9e8d7c_6b5a_4f3e_9d2c_1b0a9f8e7d6c.slice/crio-" + hexB + ".scope",
			map[string]string{"qos": "besteffort", "pod_uid": "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c", "container_id": hexB}},
		{"kubernetes", "/kubepods.slice/kubepods-pod9b2e7d10_44aa_4c3b_8f7e_0d1c2b3a4f5e.slice/cri-containerd-" + hexA + ".scope",
			map[string]string{"qos": "guaranteed", "pod_uid": "9b2e7d10-44aa-4c3b-8f7e-0d1c2b3a4f5e", "container_id": hexA}},
		{"kubernetes", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_8c1b_4a57_9f1e_2b8d7c6a5e41.slice",
			map[string]string{"qos": "burstable", "pod_uid": "3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41", "container_id": ""}},
		// kind runs kubelet with cgroup root /kubelet
		{"kubernetes", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod5a4b3c2d_1e0f_4a9b_8c7d_6e5f4a3b2c1d.slice/cri-containerd-" + hexB + ".scope",
			map[string]string{"qos": "besteffort", "pod_uid": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "container_id": hexB}},
		// kubernetes, cgroupfs driver
		{"kubernetes", "/kubepods/burstable/pod3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41/" + hexA,
			map[string]string{"qos": "burstable", "pod_uid": "3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41", "container_id": hexA}},
		{"kubernetes", "/kubepods/pod9b2e7d10-44aa-4c3b-8f7e-0d1c2b3a4f5e/" + hexB,
			map[string]string{"qos": "guaranteed", "pod_uid": "9b2e7d10-44aa-4c3b-8f7e-0d1c2b3a4f5e", "container_id": hexB}},
		{"kubernetes", "/kubepods/besteffort/pod7d5c4b3a-2e1f-4a0b-9c8d-7e6f5a4b3c2d/crio-" + hexA,
			map[string]string{"qos": "besteffort", "pod_uid": "7d5c4b3a-2e1f-4a0b-9c8d-7e6f5a4b3c2d", "container_id": hexA}},
		// a static pod's UID is a 32-hex config hash
		{"kubernetes", "/kubepods/burstable/pod6e0a4f0c8a1b2c3d4e5f60718293a4b5/" + hexA,
			map[string]string{"qos": "burstable", "pod_uid": "6e0a4f0c8a1b2c3d4e5f60718293a4b5", "container_id": hexA}},
		{"kubernetes", "/system.slice/kubelet.service", nil},
		{"kubernetes", "/kubepods.slice/kubepods-burstable.slice", nil},
		{"kubernetes", "/kubepods", nil},

		// slurm
		{"slurm", "/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0",
			map[string]string{"job": "4242", "step": "0", "uid": ""}},
		{"slurm", "/system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0",
			map[string]string{"job": "4242", "step": "batch", "uid": ""}},
		{"slurm", "/system.slice/slurmstepd.scope/job_4242/step_extern/user/task_special",
			map[string]string{"job": "4242", "step": "extern", "uid": ""}},
		{"slurm", "/system.slice/node07_slurmstepd.scope/job_9/step_interactive/user/task_0",
			map[string]string{"job": "9", "step": "interactive", "uid": ""}},
		{"slurm", "/slurm/uid_1000/job_77/step_batch/task_0",
			map[string]string{"job": "77", "step": "batch", "uid": "1000"}},
		{"slurm", "/slurm_node07/uid_1001/job_78/step_0/task_1",
			map[string]string{"job": "78", "step": "0", "uid": "1001"}},
		{"slurm", "/slurm/uid_1000/job_77",
			map[string]string{"job": "77", "step": "", "uid": "1000"}},
		{"slurm", "/system.slice/slurmstepd.scope/system", nil},
		{"slurm", "/system.slice/slurmd.service", nil},

		// docker
		{"docker", "/docker/" + hexA, map[string]string{"container_id": hexA}},
		{"docker", "/system.slice/docker-" + hexB + ".scope", map[string]string{"container_id": hexB}},
		{"docker", "/system.slice/docker.service", nil},
		{"docker", "/docker/" + hexA[:12], nil},

		// containerd
		{"containerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f9e8d7c_6b5a_4f3e_9d2c_1b0a9f8e7d6c.slice/cri-containerd-" + hexA + ".scope",
			map[string]string{"container_id": hexA}},
		{"containerd", "/system.slice/containerd.service/kubepods-besteffort-pod0f9e8d7c_6b5a_4f3e_9d2c_1b0a9f8e7d6c.slice:cri-containerd:" + hexB,
			map[string]string{"container_id": hexB}},
		{"containerd", "/system.slice/nerdctl-" + hexA + ".scope", map[string]string{"container_id": hexA}},
		{"containerd", "/default/" + hexB, map[string]string{"container_id": hexB}},
		{"containerd", "/containerd/" + hexA, map[string]string{"container_id": hexA}},
		{"containerd", "/system.slice/containerd.service", nil},
		{"containerd", "/system.slice/docker-" + hexB + ".scope", nil},

		// systemd
		{"systemd", "/tenant.slice/tenant-acme.slice/train.service",
			map[string]string{"unit": "train.service", "instance": "", "slice": "tenant-acme.slice", "slice_leaf": "acme"}},
		{"systemd", "/system.slice/system-train.slice/train@globex.service",
			map[string]string{"unit": "train@globex.service", "instance": "globex", "slice": "system-train.slice", "slice_leaf": "train"}},
		{"systemd", "/user.slice/user-1000.slice/session-3.scope",
			map[string]string{"unit": "session-3.scope", "instance": "", "slice": "user-1000.slice", "slice_leaf": "1000"}},
		{"systemd", "/user.slice/user-1003.slice/user@1003.service/app.slice/app-gnome-blender-4242.scope",
			map[string]string{"unit": "app-gnome-blender-4242.scope", "instance": "", "slice": "app.slice", "slice_leaf": "app"}},
		{"systemd", "/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0",
			map[string]string{"unit": "slurmstepd.scope", "instance": "", "slice": "system.slice", "slice_leaf": "system"}},
		{"systemd", "/init.scope",
			map[string]string{"unit": "init.scope", "instance": "", "slice": "-.slice", "slice_leaf": ""}},
		{"systemd", "/", nil},
		{"systemd", "/kubepods/burstable/pod3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41/" + hexA, nil},
		{"systemd", "/docker/" + hexA, nil},
	}
	for _, tt := range tests {
		t.Run(tt.preset+strings.ReplaceAll(tt.path, "/", "_"), func(t *testing.T) {
			m, ok := lookupPreset(tt.preset)
			if !ok {
				t.Fatalf("no preset %q", tt.preset)
			}
			vals := make([]string, len(m.groups()))
			matched := m.match(tt.path, vals)
			if tt.want == nil {
				if matched {
					t.Errorf("%s matched %s, want no match (groups %v)", tt.preset, tt.path, vals)
				}
				return
			}
			if !matched {
				t.Fatalf("%s did not match %s", tt.preset, tt.path)
			}
			got := map[string]string{}
			for i, g := range m.groups() {
				got[g] = vals[i]
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("%s on %s:\n got %v\nwant %v", tt.preset, tt.path, got, tt.want)
			}
		})
	}
}

func TestPresetNamesAllResolve(t *testing.T) {
	for _, n := range presetNames() {
		if _, ok := lookupPreset(n); !ok {
			t.Errorf("preset %q is listed but not built", n)
		}
	}
	if _, ok := lookupPreset("nomad"); ok {
		t.Error("an unknown preset resolved")
	}
}

func TestPatternGroupsInAlternatives(t *testing.T) {
	// Go allows one group name in two alternatives: whichever took part
	// gives the value.
	re := `^/(?:a/(?P<t>[a-z]+)|b/(?P<t>[0-9]+))$`
	r := Rule{CgroupPattern: re, Tenant: "${t}"}
	c, err := compileRule(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]string, len(c.paths.groups()))
	for path, want := range map[string]string{"/a/acme": "acme", "/b/42": "42"} {
		if !c.paths.match(path, vals) || c.tenant.expand(vals) != want {
			t.Errorf("%s on %s: tenant %q, want %q", re, path, c.tenant.expand(vals), want)
		}
	}
}
