// Package scenario describes a simulated GPU node over time and drives it:
// a scenario file (YAML) names the GPUs, the tenants, their jobs with
// churn, faults and MIG reconfigurations; a Driver applies the scenario's state at any virtual
// instant to a sim.Machine and to a fake host root (proc/, etc/passwd)
// that attribution reads; Expected computes, from the file alone, the
// GPU-milliseconds each tenant should be metered for.
//
// It must never compute expectations with metering code (they are the
// reference the meter is tested against), and never write outside the
// host root it was given, which must start empty.
//
// # File format
//
// Decoding is strict: an unknown key, a wrong type or an invalid value is
// an error naming the file and line, e.g.
//
//	configs/scenarios/x.yaml:17: job 3: end 1h0m0s is not after start 2h0m0s
//
// Jobs, faults and reconfigurations are numbered from 1 in file order;
// GPUs and MIG instances are indexes from 0. Durations are Go durations ("90m", "1h30m0.5s", "0s";
// a bare 0 is not a duration) in whole milliseconds.
//
//	name: demo                      # default: the file's base name
//	start: 2026-11-23T00:00:00Z     # virtual start (required); offsets below are from it
//	duration: 2h                    # required
//	poll_interval: 1s               # sampling tick of a simulation; default 1s
//	gpus:                           # at least one
//	  - model: H100-SXM5-80GB       # sim.Models(); default H100-SXM5-80GB
//	    uuid: GPU-…                 # optional; default deterministic from the index
//	    mig: [3g.40gb, 2g.20gb]     # optional MIG layout (sim.Profiles(model)); empty: MIG off
//	tenants:                        # key: the tenant name the rules should yield
//	  acme: {user: acme, uid: 2001} # user (written to etc/passwd) needs a uid
//	  k8s-3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41:
//	    cgroup: /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_uid_systemd}.slice/cri-containerd-{container}.scope
//	    pod_uid: 3f1c2a4e-8c1b-4a57-9f1e-2b8d7c6a5e41
//	jobs:
//	  - tenant: acme                # required, a key of tenants
//	    gpu: 0                      # required
//	    mig: 1                      # instance index: required on a MIG GPU, forbidden otherwise
//	    start: 10m                  # the processes exist on [start, end)
//	    end: 1h30m                  # after start, at most duration
//	    processes: 2                # concurrent processes; default 1
//	    utilization: 80             # SM % per process, 0-100; default 100
//	    restart_every: 20m          # churn: all processes exit and new ones start (>= 1s)
//	    reuse_pids: true            # restarted processes keep their PIDs (new start time)
//	    pid: 31337                  # pin the first process's PID (next ones +1, +2, …)
//	    job_id: 4242                # {job} in the cgroup template; default the job's number
//	    power_watts: 500            # board power while running (at most the model's limit); default 70 W + util × (limit − 70 W)
//	    memory_mib: 20480           # GPU memory per process; default 1024
//	faults:
//	  - gpu: 3
//	    lost_at: 5h                 # GPU_IS_LOST on [lost_at, back_at)
//	    back_at: 6h                 # default: the end (lost for good)
//	reconfigure:                    # MIG layout changes, in time order per GPU
//	  - gpu: 1
//	    at: 30m                     # inside (0, duration)
//	    mig: [3g.40gb, 4g.40gb]     # required: the new layout; []: MIG off
//	slurm_jobs:                     # the simulated Slurm controller, by job id
//	  4242: {account: physics, user: alice}
//	attribution:                    # the node's rules (attribution.Config)
//	  rules: [...]
//
// # Slurm accounts
//
// With slurm_jobs, NewDriver writes a squeue into the host root
// (Driver.Squeue) that answers `squeue --noheader --jobs=<id>
// --format=%A|%a|%u` from the table and fails for other jobs, as squeue
// does for a job the controller does not know; the simulation passes it
// to the attribution (attribution.WithSqueue), so a slurm rule's
// ${account} and ${user} come from it (configs/scenarios/slurm-accounts.yaml).
//
// # MIG reconfiguration
//
// A GPU's layout is that of gpus from the start, then each of its
// reconfigure entries' from its at: the simulator destroys the GPU's MIG
// instances and creates the new ones with new UUIDs (or turns MIG off), as
// nvidia-smi mig does. The driver refuses to reconfigure a busy GPU, so a
// job on the GPU must end by the reconfiguration (it may end at that very
// instant, and one may start on the new layout at it), and a lost GPU
// cannot be reconfigured. A job's mig indexes the layout in force at its
// start. Each layout's units are distinct (Unit.Layout) and exist only
// while it is in force (Scenario.Span); Driver.UnitUUID knows a unit's
// UUID once its layout has been applied.
//
// # Process identities
//
// A tenant's processes run as its uid (Uid: in proc/<pid>/status) in the
// cgroup given by its template (proc/<pid>/cgroup "0::<path>"; default
// /user.slice/user-{uid}.slice/session-{job}.scope, a login session).
// Placeholders: {tenant}, {user}, {uid}, {job} (the job's job_id), {run}
// (0, then +1 per restart), {pid}, {container} (64 hex digits, one per job
// run), {pod_uid} and {pod_uid_systemd} (the tenant's pod_uid with '_' for
// '-', as the kubelet's systemd cgroup driver writes it). So every
// attribution preset can be exercised:
//
//	Kubernetes  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_uid_systemd}.slice/cri-containerd-{container}.scope
//	Slurm       /system.slice/slurmstepd.scope/job_{job}/step_0/user/task_0
//	systemd     /tenant.slice/tenant-acme.slice/job-{job}.scope
//	Unix user   user: alice, uid: 2001 (default cgroup)
//
// A tenant named "unattributed" is one whose processes no rule matches.
//
// PIDs are allocated in order of process start from 20000 up, skipping
// pinned ones, so a file always yields the same PIDs; two processes holding
// one PID at once is an error. A restart is instantaneous: the old
// processes end and the new ones start at the same instant, so the tenant
// keeps the unit, but with reuse_pids (or a pid pinned by another job that
// starts as one ends) attribution sees a PID with a new start time.
//
// # The host root
//
// proc/stat carries btime, an hour before the scenario's start; a
// process's proc/<pid>/stat carries its virtual start in clock ticks
// (100 Hz) since then. gopsutil (v3.24.5) reads the boot time from
// proc/uptime, which the driver does not write, so what it reports as a
// start time is the tick count in whole seconds: still unique per
// process start at least a second apart (restart_every >= 1s), which is
// what PID-reuse detection needs.
//
// The driver also knows exactly when each process instance ends, so
// Driver.Watcher is a process watcher for collectors/attribution (as
// pidfds are on a real host): an agent metering the simulator reads a
// process's files once, when its PID first appears, instead of checking
// its start time in proc/<pid>/stat at every poll. The start time stays
// right for anything that does read it (gpumeter devices, tests).
//
// # The simulated devices
//
// Apply sets the MIG layouts in force, each unit's processes (PID, memory,
// SM utilization), each
// GPU's utilization (the sum over its processes, at most 100; MIG
// instances weighted by slices), power (the hungriest running job's, idle
// 70 W, 0 while lost) and energy (power integrated between Apply calls),
// and lost GPUs. It indexes the change points and does nothing but
// integrate energy when none is due, so a day at 1 s ticks is cheap (see
// BenchmarkApplyDay).
//
// # Expected usage
//
// ExpectedUnits documents the rule; it mirrors attribution's weights and
// the meter's per-sample largest-remainder split, and is exact when change
// points fall on poll ticks, within one poll interval per job start, job
// end or fault edge otherwise. Each unit is expected over its span: a
// reconfiguration ends the old layout's units and starts the new one's.
package scenario
