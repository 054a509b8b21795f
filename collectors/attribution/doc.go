// Package attribution says which tenant each GPU unit's compute processes
// belong to: it turns a device.Snapshot into one Observation per unit, with
// the unit's tenants, how each was found, and their weights when several
// tenants share the unit.
//
// It must never drop a process: a process no rule matches, or one it cannot
// read, is metered under the tenant "unattributed". It never decides what
// time is billable (that is the meter's job) and never reads the agent's
// own /proc when given another host root.
//
// # Rules
//
// The configuration is a list of rules:
//
//	attribution:
//	  rules:
//	    - name: reserved-h100           # optional, for logs and errors
//	      gpu: GPU-5c9d0a8e-1f3b-4c7e-9a2d-6e8f0b1c2d3e
//	      tenant: acme
//	    - cgroup: kubernetes
//	      tenant: k8s-${pod_uid}
//	    - cgroup: slurm
//	      tenant: ${account}            # from squeue; squeue: /path (optional)
//	    - cgroup_pattern: '^/tenants\.slice/tenants-(?P<t>[a-z0-9]+)\.slice/'
//	      tenant: ${t}
//	    - user: alice
//	      tenant: lab-alice
//	    - uid: 1001
//	      tenant: ${user}
//
// Each rule has exactly one matcher (gpu, cgroup, cgroup_pattern, user, uid,
// namespace)
// and a tenant. Decoding is strict: an unknown or repeated field, a missing
// or second matcher, an unknown preset, a pattern that does not compile, a
// template naming a group the matcher lacks, or an empty tenant is an error
// that names the line and the field, e.g.
//
//	line 12: attribution rule "k8s": cgroup_pattern: error parsing regexp: missing closing ): `(`
//
// # Order
//
// Static rules first: a unit (a whole GPU or a MIG instance) named by a
// `gpu` rule, by its own UUID or its physical GPU's, belongs entirely to
// that rule's tenant, whatever its processes are; its processes are not
// read. Among gpu rules the earlier wins, so a rule for a GPU listed before
// a rule for one of its MIG instances takes the whole GPU. Method: static.
//
// Otherwise every process is attributed on its own, by the first process
// rule (cgroup, cgroup_pattern, user, uid) that matches it, in config order.
// Put broad rules last: the systemd preset matches nearly every process.
//
// A statically assigned unit with no process is idle, like any other: a
// voucher never pays for idle time.
//
// # Namespace rules
//
//	attribution:
//	  rules:
//	    - namespace: research-*         # a glob (path.Match: *, ?, [a-z])
//	      tenant: research
//	    - namespace: '*'
//	      tenant: ${namespace}          # groups: namespace, pod, container
//
// A unit the kubelet allocated to a pod (WithPods: collectors/kubelet reads
// its PodResources API) belongs, with all its processes, to the tenant of
// the first namespace rule that matches the pod's namespace, whatever the
// processes' cgroups say; after the static rules, before the process
// rules. Method: "kubelet". A pod holding a whole GPU holds its MIG
// instances. A unit held by several pods (time-slicing replicas) has their
// tenant only when they all give the same one. A unit no pod holds, held
// by pods of different tenants, or by a pod no namespace rule matches, or
// any unit while the kubelet cannot tell (no source, or its last answer
// older than its max_stale), is left to the process rules. A pod's unit
// with no process is idle.
//
// # Tenant templates
//
// tenant is literal text with ${group} references, replaced by the values
// the matcher extracted. A rule whose template names a group that is empty
// for this path (e.g. ${instance} for a unit that is not a template unit,
// ${uid} on Slurm's cgroup v2 layout) does not match, and the next rule is
// tried: a half-filled name is never a tenant. User and uid rules have the groups ${user} (the name in
// /etc/passwd, or the decimal uid when the uid has none) and ${uid}.
//
// Every tenant must be a name the authority accepts (protocol.CheckName:
// 1-128 bytes of printable UTF-8, no control or format characters, no
// leading or trailing space) and must not be "unattributed" in any case
// or spacing (protocol.TenantUnattributed, reserved). A rule whose tenant
// is literal text breaking this is a config error naming its line and the
// tenant field. A template is checked each time it is filled: a value that
// breaks it (a cgroup path holding "unattributed", a zero-width space)
// makes the process unattributed (method unattributed), with a warning
// logged once per rule and value, so the agent never writes a record the
// authority would refuse.
//
// # cgroup rules
//
// The process's /proc/<pid>/cgroup is read; each line's path (cgroup v2
// "0::/path", v1 "N:controllers:/path", hybrid both) is matched in file
// order and the first path that matches (and yields a non-empty tenant)
// decides. Method: "cgroup:<preset>" or "cgroup:pattern".
//
// cgroup_pattern is a Go regexp (RE2 syntax, https://pkg.go.dev/regexp/syntax)
// matched anywhere in the path: anchor it with ^ and $ where that matters.
// Its named groups, (?P<name>...), are the template's groups.
//
// Presets, with the groups they extract:
//
// kubernetes: pod_uid, qos (burstable, besteffort or guaranteed),
// container_id (empty for a process in the pod's own cgroup).
//
//	/kubepods/burstable/pod3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41/<64 hex>       cgroupfs driver
//	/kubepods/pod3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41/<64 hex>                  cgroupfs, Guaranteed
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_8c1b_4a57_9f1e_2b8d7c6a5e41.slice/cri-containerd-<64 hex>.scope
//
// With the systemd driver the pod UID is written with '_' for '-'; the
// preset turns it back, so ${pod_uid} is the UID the Kubernetes API shows.
// Container runtimes: containerd, CRI-O, Docker (cri-dockerd); kind's
// kubelet-kubepods slices too.
//
// slurm: job, step (0, batch, extern, interactive, ...), uid (cgroup v1
// only; empty on v2) from the path; account and user from the Slurm
// controller, through `squeue --noheader --jobs=<job> --format=%A|%a|%u`
// (the rule's squeue field, an absolute path; default squeue through
// PATH), run only when the tenant names them. It is asked once per job
// (cached, 4096 jobs at most, the oldest forgotten first; a failure for
// 30 s), with a 2 s timeout. The job's environment (SLURM_JOB_ACCOUNT) is
// never read: the job sets it. When squeue fails the rule does not match
// and the next rule decides, e.g. a second slurm rule with slurm-${job}.
// See slurm.go for what is trusted.
//
//	/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0                 cgroup v2
//	/slurm/uid_1000/job_77/step_batch/task_0                                   cgroup v1
//
// docker: container_id.
//
//	/docker/<64 hex>                                                           cgroupfs driver
//	/system.slice/docker-<64 hex>.scope                                        systemd driver
//
// containerd: container_id.
//
//	/kubepods.slice/.../cri-containerd-<64 hex>.scope                          CRI, systemd driver
//	/system.slice/containerd.service/kubepods-...-pod<uid>.slice:cri-containerd:<64 hex>
//	/system.slice/nerdctl-<64 hex>.scope                                       nerdctl, systemd driver
//	/default/<64 hex>, /containerd/<64 hex>                                    cgroupfs parents
//
// systemd: the deepest systemd unit in the path. unit (e.g. train@acme.service),
// instance (acme, the part after '@' of a template unit), slice (the
// innermost slice holding the unit, -.slice for the root) and slice_leaf
// (the slice's last dash-separated part: acme for tenant-acme.slice, 1000
// for user-1000.slice).
//
//	/tenant.slice/tenant-acme.slice/job42.service    unit=job42.service slice=tenant-acme.slice slice_leaf=acme
//	/user.slice/user-1000.slice/session-3.scope      unit=session-3.scope slice=user-1000.slice slice_leaf=1000
//
// A Kubernetes or Docker path also holds systemd units (…-pod<uid>.slice,
// docker-<id>.scope): list the specific presets before systemd.
//
// # user and uid rules
//
// They match the process's real uid (the user who started it; setuid
// programs do not change it). `user` names are looked up in
// <hostRoot>/etc/passwd, which is read again when it changes; users that
// exist only in a directory service (LDAP, SSSD) are not there, so match
// them with `uid`. Method: user.
//
// # Unattributed, and processes that are gone
//
// A process no rule matches is metered under the tenant "unattributed"
// (method unattributed), as is one whose rule's template gave an invalid
// tenant (see Tenant templates), and one that NVML reported but whose
// /proc entry is gone by the time it is read (it exited between the two
// reads; logged at debug): its GPU time was used, so it is never dropped
// or idle.
//
// # Shared units
//
// When processes of several tenants are on one unit, each tenant's Share
// carries a weight: the sum of its processes' SM utilization when every
// process on the unit has a sample and at least one is non-zero
// (SplitRule "utilization"; a tenant whose processes all sampled 0 gets
// weight 1), else 1 per tenant (SplitRule "equal"). With one tenant the
// weight is 1 and SplitRule is "". A tenant whose processes were found by
// different rules carries the method of the earliest of those rules.
//
// # PID reuse and the cache
//
// A process's attribution is cached by (pid, start time) and the start time
// is read again at every call, so a PID reused by a new process is
// attributed afresh. Entries for PIDs absent from the latest snapshot are
// dropped, so memory is bounded by the processes on the GPUs. Only matches
// are cached: an unattributed process is tried again at every call, so a
// user added to /etc/passwd later is picked up. The start time is the
// kernel's: field 22 of /proc/<pid>/stat, in clock ticks since boot (1/100 s),
// read directly because this runs for every GPU process on every poll;
// gopsutil reads the uids, only when a process is resolved. A PID reused
// within the same clock tick is not detected, which needs the PID space to
// wrap in under 10 ms.
//
// That is the fallback. Where the host root's /proc is the agent's own, a
// resolved process is followed by a pidfd instead (watch.go): one poll(2)
// over all of them per call says which exited, exactly (a pidfd never
// refers to a later process with the same PID), and a process known alive
// is not read from /proc at all; only new PIDs are. A process pidfd_open
// refuses, a fake tree (the simulator) and another PID namespace keep the
// start time check; WithProcessWatcher lets a simulator stand in. Close
// releases the pidfds (they are also released when the Attributor is
// garbage).
//
// # Concurrency
//
// Attribute is safe for concurrent use; calls are serialized. Rules are
// fixed at New: to reload them, build a new Attributor and swap it in.
package attribution
