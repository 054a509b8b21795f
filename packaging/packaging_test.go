package packaging

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/internal/testenv"
)

// debianSuite is the release the test root is made of: the one CI runs.
const debianSuite = "bookworm"

// shipped is what each package must hold: its regular files with their
// modes (all owned by root), and its conffiles.
var shipped = map[string]struct {
	files     map[string]string
	conffiles []string
}{
	"gpumeter": {
		files: map[string]string{
			"/usr/bin/gpumeter":                                   "-rwxr-xr-x",
			"/usr/lib/systemd/system/gpumeter.service":            "-rw-r--r--",
			"/usr/lib/sysusers.d/gpumeter.conf":                   "-rw-r--r--",
			"/usr/lib/tmpfiles.d/gpumeter.conf":                   "-rw-r--r--",
			"/etc/gpumeter/agent.yaml":                            "-rw-r--r--",
			"/usr/share/gpumeter/prometheus/alerts.yml":           "-rw-r--r--",
			"/usr/share/gpumeter/grafana/gpumeter-dashboard.json": "-rw-r--r--",
			"/usr/share/doc/gpumeter/copyright":                   "-rw-r--r--",
			"/usr/share/doc/gpumeter/changelog.Debian.gz":         "-rw-r--r--",
			"/usr/share/doc/gpumeter/operations.md":               "-rw-r--r--",
			"/usr/share/lintian/overrides/gpumeter":               "-rw-r--r--",
		},
		conffiles: []string{"/etc/gpumeter/agent.yaml"},
	},
	"voucher-authority": {
		files: map[string]string{
			"/usr/bin/voucher-authority":                                       "-rwxr-xr-x",
			"/usr/lib/systemd/system/voucher-authority.service":                "-rw-r--r--",
			"/usr/lib/sysusers.d/voucher-authority.conf":                       "-rw-r--r--",
			"/usr/lib/tmpfiles.d/voucher-authority.conf":                       "-rw-r--r--",
			"/etc/voucher-authority/authority.yaml":                            "-rw-r--r--",
			"/usr/share/doc/voucher-authority/copyright":                       "-rw-r--r--",
			"/usr/share/doc/voucher-authority/changelog.Debian.gz":             "-rw-r--r--",
			"/usr/share/doc/voucher-authority/operations.md":                   "-rw-r--r--",
			"/usr/share/doc/voucher-authority/billing.md":                      "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/beijing.yaml":  "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/hangzhou.yaml": "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/henan.yaml":    "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/nanning.yaml":  "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/qingyang.yaml": "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/shanghai.yaml": "-rw-r--r--",
			"/usr/share/doc/voucher-authority/examples/programs/shenzhen.yaml": "-rw-r--r--",
			"/usr/share/voucher-authority/prometheus/alerts.yml":               "-rw-r--r--",
			"/usr/share/lintian/overrides/voucher-authority":                   "-rw-r--r--",
		},
		conffiles: []string{"/etc/voucher-authority/authority.yaml"},
	},
}

// built is one run of packaging/build.
type built struct {
	version string
	deb     map[string]string // package → .deb path
	rpm     map[string]string // package → .rpm path
	nfpm    string            // the nfpm binary it used
}

// build runs packaging/build, as an operator does, into dist.
func build(t *testing.T, ctx context.Context, dist, version, nfpm string) built {
	t.Helper()
	env := []string{"DIST=" + dist, "VERSION=" + version}
	if nfpm != "" {
		env = append(env, "NFPM="+nfpm)
	}
	mustRun(t, ctx, "..", env, "bash", "packaging/build")
	b := built{version: version, deb: map[string]string{}, rpm: map[string]string{}, nfpm: nfpm}
	if b.nfpm == "" {
		b.nfpm = filepath.Join(dist, "build", "tools", "nfpm")
	}
	for pkg := range shipped {
		for kind, pattern := range map[string]string{"deb": pkg + "_" + version + "-1_*.deb", "rpm": pkg + "-" + version + "-1.*.rpm"} {
			m, _ := filepath.Glob(filepath.Join(dist, pattern))
			if len(m) != 1 {
				t.Fatalf("packaging/build made %v for %s, want one file", m, pattern)
			}
			if kind == "deb" {
				b.deb[pkg] = m[0]
			} else {
				b.rpm[pkg] = m[0]
			}
		}
	}
	return b
}

// debootstrap makes a minimal Debian root at dir, with the standalone
// sysusers and tmpfiles and procps (kill) the packages depend on (no init
// system), from the
// configured apt mirror. Its output goes to logFile.
func debootstrap(ctx context.Context, dir, logFile string) error {
	log, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include=systemd-standalone-sysusers,systemd-standalone-tmpfiles,procps",
		debianSuite, dir, debianMirror(debianSuite))
	cmd.Stdout, cmd.Stderr = log, log
	// Cancelled, debootstrap's dpkg and chroot children go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		tail, _ := os.ReadFile(logFile)
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return fmt.Errorf("debootstrap %s from %s: %w\n%s", debianSuite, debianMirror(debianSuite), err, tail)
	}
	return nil
}

// unmountUnder detaches every mount at or below dir (proc mounted for the
// maintainer scripts, and whatever an interrupted debootstrap left), so that
// the temporary directory can be removed.
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Error(err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			points = append(points, f[1])
		}
	}
	slices.Reverse(points)
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	}
}

// TestPackages builds the packages twice (versions 1.0.0 and 1.0.1) with
// packaging/build, checks the .deb and .rpm files, then installs version 1
// into a debootstrapped Debian root, upgrades to version 2 over a modified
// config, a node key and a spool, removes and purges.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the packages and a Debian root: about two minutes")
	}
	requireRoot(t)
	for _, tool := range []string{"go", "objdump", "objcopy", "dpkg-deb", "lintian", "debootstrap", "chroot"} {
		testenv.Tool(t, tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 9*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	start := time.Now()

	// The Debian root is made while the packages build.
	rootfs := filepath.Join(tmp, "rootfs")
	var rootErr error
	rootReady := make(chan struct{})
	go func() {
		defer close(rootReady)
		rootErr = debootstrap(ctx, rootfs, filepath.Join(tmp, "debootstrap.log"))
	}()
	t.Cleanup(func() {
		cancel()
		<-rootReady
		unmountUnder(t, rootfs)
	})

	v1 := build(t, ctx, filepath.Join(tmp, "v1"), "1.0.0", "")
	v2 := build(t, ctx, filepath.Join(tmp, "v2"), "1.0.1", v1.nfpm)
	t.Logf("packages built in %v", time.Since(start).Round(time.Second))

	t.Run("deb contents", func(t *testing.T) { checkDebs(t, ctx, v1) })
	t.Run("lintian", func(t *testing.T) { checkLintian(t, ctx, v1) })
	t.Run("rpm", func(t *testing.T) { checkRPMs(t, ctx, v1) })

	<-rootReady
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	t.Logf("Debian root ready after %v", time.Since(start).Round(time.Second))
	// Maintainer scripts run systemd-tmpfiles, which needs /proc.
	if err := syscall.Mount("proc", filepath.Join(rootfs, "proc"), "proc", 0, ""); err != nil {
		t.Fatalf("mount proc in the root: %v", err)
	}
	if !t.Run("install", func(t *testing.T) { checkInstall(t, ctx, rootfs, v1) }) {
		return
	}
	if !t.Run("upgrade keeps config, key and spool", func(t *testing.T) { checkUpgrade(t, ctx, rootfs, v2) }) {
		return
	}
	t.Run("remove and purge keep the state", func(t *testing.T) { checkRemovePurge(t, ctx, rootfs) })
	t.Logf("done in %v", time.Since(start).Round(time.Second))
}

func checkDebs(t *testing.T, ctx context.Context, b built) {
	for pkg, want := range shipped {
		deb := b.deb[pkg]
		got := debContents(t, ctx, deb)
		for path, mode := range want.files {
			f, ok := got[path]
			switch {
			case !ok:
				t.Errorf("%s: %s missing", pkg, path)
			case f.mode != mode || f.owner != "root/root":
				t.Errorf("%s: %s is %s %s, want %s root/root", pkg, path, f.mode, f.owner, mode)
			}
		}
		for path := range got {
			if _, ok := want.files[path]; !ok {
				t.Errorf("%s: unexpected file %s", pkg, path)
			}
		}

		fields := mustRun(t, ctx, "", nil, "dpkg-deb", "-f", deb, "Version", "Depends")
		if !strings.Contains(fields, "Version: "+b.version+"-1\n") {
			t.Errorf("%s: control fields\n%s\nwant Version: %s-1", pkg, fields, b.version)
		}
		deps := []string{"libc6 (>= 2.", "systemd-sysusers", "systemd-tmpfiles"}
		if pkg == "gpumeter" {
			deps = append(deps, "procps") // /bin/kill for ExecReload
		}
		for _, dep := range deps {
			if !strings.Contains(fields, dep) {
				t.Errorf("%s: Depends lacks %s:\n%s", pkg, dep, fields)
			}
		}

		ctrl := t.TempDir()
		mustRun(t, ctx, "", nil, "dpkg-deb", "--control", deb, ctrl)
		conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		if got := strings.Fields(string(conffiles)); !slices.Equal(got, want.conffiles) {
			t.Errorf("%s: conffiles %q, want %q", pkg, got, want.conffiles)
		}
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			data, err := os.ReadFile(filepath.Join(ctrl, script))
			if err != nil {
				t.Fatalf("%s: %v", pkg, err)
			}
			text := string(data)
			if strings.Contains(text, "@NAME@") || !strings.Contains(text, pkg+".service") {
				t.Errorf("%s: %s does not name %s.service:\n%s", pkg, script, pkg, text)
			}
			// Installing must never start or enable the service: the node
			// has no registered key yet.
			for _, never := range []string{"systemctl enable", "systemctl start", "deb-systemd-invoke start", "deb-systemd-helper enable"} {
				if strings.Contains(text, never) {
					t.Errorf("%s: %s runs %q", pkg, script, never)
				}
			}
		}
	}
}

// checkLintian requires lintian (pedantic, experimental and info tags
// included) to report nothing but the overridden tags, each of which has
// its reason in packaging/lintian/<package>.
func checkLintian(t *testing.T, ctx context.Context, b built) {
	args := []string{"--pedantic", "--display-experimental", "--display-info", "--show-overrides"}
	for _, pkg := range slices.Sorted(maps.Keys(shipped)) {
		args = append(args, b.deb[pkg])
	}
	stdout, stderr, err := run(ctx, "", nil, "lintian", args...)
	var tags, overridden []string
	for _, line := range strings.Split(stdout+stderr, "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "N:"), strings.Contains(line, "running with root privileges is not recommended"):
		case strings.HasPrefix(line, "O: "):
			overridden = append(overridden, line)
		default:
			tags = append(tags, line)
		}
	}
	if err != nil || len(tags) > 0 {
		t.Errorf("lintian: %v\n%s", err, strings.Join(tags, "\n"))
	}
	t.Logf("lintian overrides in use:\n%s", strings.Join(overridden, "\n"))
}

// checkRPMs checks what nfpm wrote into the .rpm files: modes, owners, the
// config file flagged %config(noreplace), the dependencies and scripts.
func checkRPMs(t *testing.T, ctx context.Context, b built) {
	testenv.Tool(t, "rpm")
	for pkg, want := range shipped {
		rpm := b.rpm[pkg]
		out := mustRun(t, ctx, "", nil, "rpm", "-qp", "--queryformat",
			"[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm)
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 { // no flags
				f = []string{f[0], f[1], "", f[2]}
			}
			if len(f) != 4 {
				t.Fatalf("%s: rpm -qp line %q", pkg, line)
			}
			if f[1] != "root/root" {
				t.Errorf("%s: %s owned by %s", pkg, f[3], f[1])
			}
			got[f[3]] = f[0] + " " + f[2]
		}
		for path, mode := range want.files {
			if strings.Contains(path, "lintian") || strings.HasSuffix(path, "changelog.Debian.gz") {
				continue // Debian only
			}
			flags := ""
			if slices.Contains(want.conffiles, path) {
				flags = "cn" // %config(noreplace)
			}
			if g, ok := got[path]; !ok || g != mode+" "+flags {
				t.Errorf("%s: %s is %q, want %q", pkg, path, g, mode+" "+flags)
			}
		}
		if v := mustRun(t, ctx, "", nil, "rpm", "-qp", "--queryformat", "%{VERSION}-%{RELEASE}", rpm); v != b.version+"-1" {
			t.Errorf("%s: rpm version %s, want %s-1", pkg, v, b.version)
		}
		requires := mustRun(t, ctx, "", nil, "rpm", "-qpR", rpm)
		deps := []string{"glibc >= 2.", "/usr/bin/systemd-sysusers", "/usr/bin/systemd-tmpfiles"}
		if pkg == "gpumeter" {
			deps = append(deps, "/usr/bin/kill")
		}
		for _, dep := range deps {
			if !strings.Contains(requires, dep) {
				t.Errorf("%s: rpm requires lack %s:\n%s", pkg, dep, requires)
			}
		}
		scripts := mustRun(t, ctx, "", nil, "rpm", "-qp", "--scripts", rpm)
		for _, want := range []string{"systemd-sysusers /usr/lib/sysusers.d/" + pkg + ".conf", "systemctl try-restart " + pkg + ".service", "disable --now " + pkg + ".service"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("%s: rpm scripts lack %q:\n%s", pkg, want, scripts)
			}
		}
	}
}

// dpkgInstall copies debs into root and installs them with the root's dpkg.
// Stdin is empty: a conffile question fails the install instead of hanging.
func dpkgInstall(t *testing.T, ctx context.Context, root string, debs map[string]string) {
	t.Helper()
	args := []string{"dpkg", "--install"}
	for _, pkg := range slices.Sorted(maps.Keys(debs)) {
		data, err := os.ReadFile(debs[pkg])
		if err != nil {
			t.Fatal(err)
		}
		name := "/tmp/" + filepath.Base(debs[pkg])
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, name)
	}
	chrootCmd(t, ctx, root, args...)
}

// installedVersion is the package's version and state in the root's dpkg
// database.
func installedVersion(t *testing.T, ctx context.Context, root, pkg string) string {
	t.Helper()
	return chrootCmd(t, ctx, root, "dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", pkg)
}

func checkInstall(t *testing.T, ctx context.Context, root string, b built) {
	dpkgInstall(t, ctx, root, b.deb)
	for pkg, want := range shipped {
		if got := installedVersion(t, ctx, root, pkg); got != b.version+"-1 ii " {
			t.Errorf("%s: installed %q, want %q", pkg, got, b.version+"-1 ii ")
		}
		for path, mode := range want.files {
			if got := fileMode(t, filepath.Join(root, path)); got != mode+" 0:0" {
				t.Errorf("%s: %s is %s, want %s 0:0", pkg, path, got, mode)
			}
		}
		// The system user, made by systemd-sysusers from the package's
		// sysusers.d file.
		u, ok := lookupUser(t, root, pkg)
		if !ok {
			t.Fatalf("no user %s in the root's /etc/passwd", pkg)
		}
		if u.uid == 0 || u.uid >= 1000 || u.home != "/var/lib/"+pkg || u.shell != "/usr/sbin/nologin" {
			t.Errorf("user %s: %+v, want a system uid, home /var/lib/%s, shell /usr/sbin/nologin", pkg, u, pkg)
		}
		// The state directory, there before the first start (tmpfiles.d).
		if got, want := fileMode(t, filepath.Join(root, "var/lib", pkg)), fmt.Sprintf("drwx------ %d:%d", u.uid, u.gid); got != want {
			t.Errorf("/var/lib/%s is %s, want %s", pkg, got, want)
		}
		if got := chrootCmd(t, ctx, root, "/usr/bin/"+pkg, "version"); !strings.Contains(got, b.version) {
			t.Errorf("%s version: %q, want %s", pkg, got, b.version)
		}
		// Not enabled: no enablement link anywhere under /etc/systemd.
		links, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/*/"+pkg+".service"))
		if len(links) > 0 {
			t.Errorf("%s.service enabled on installation: %v", pkg, links)
		}
	}
	if members, _ := groupMembers(t, root, "video"); !slices.Contains(members, "gpumeter") {
		t.Errorf("video group members %q lack gpumeter", members)
	}
	// The shipped config passes the shipped binary's check (with warnings
	// for its placeholders), as run makes it before starting.
	chrootCmd(t, ctx, root, "/usr/bin/gpumeter", "check-config", "/etc/gpumeter/agent.yaml")
	agentYAML, err := os.ReadFile("../configs/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/gpumeter/agent.yaml")); !bytes.Equal(got, agentYAML) {
		t.Error("/etc/gpumeter/agent.yaml differs from configs/agent.yaml")
	}
}

// localChange is what the operator adds to each config before the upgrade.
const localChange = "\n# changed on this node\n"

func checkUpgrade(t *testing.T, ctx context.Context, root string, b built) {
	// The operator's state: a changed config, the node key made as the
	// guide says (by the gpumeter user, in the state directory), a spool.
	for _, want := range shipped {
		f, err := os.OpenFile(filepath.Join(root, want.conffiles[0]), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(localChange); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := lookupUser(t, root, "gpumeter")
	ids := fmt.Sprintf("%d:%d", u.uid, u.gid)
	keygen := mustRun(t, ctx, "", nil, "chroot", "--userspec="+ids, "--groups="+fmt.Sprint(u.gid), root,
		"/usr/bin/gpumeter", "keygen", "/var/lib/gpumeter/node.key")
	if !strings.Contains(keygen, "public_key: ") {
		t.Fatalf("gpumeter keygen printed %q, want the public key", keygen)
	}
	key := filepath.Join(root, "var/lib/gpumeter/node.key")
	spool := filepath.Join(root, "var/lib/gpumeter/spool.db")
	if err := os.WriteFile(spool, []byte("unacknowledged batches"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(spool, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	authorityDB := filepath.Join(root, "var/lib/voucher-authority/authority.db")
	if err := os.WriteFile(authorityDB, []byte("registered nodes"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, p := range []string{key, spool, authorityDB} {
		before[p], _ = os.ReadFile(p)
	}

	dpkgInstall(t, ctx, root, b.deb)

	for pkg, want := range shipped {
		if got := installedVersion(t, ctx, root, pkg); got != b.version+"-1 ii " {
			t.Errorf("%s: after upgrade %q, want %q", pkg, got, b.version+"-1 ii ")
		}
		if got := chrootCmd(t, ctx, root, "/usr/bin/"+pkg, "version"); !strings.Contains(got, b.version) {
			t.Errorf("%s version after upgrade: %q, want %s", pkg, got, b.version)
		}
		conf, _ := os.ReadFile(filepath.Join(root, want.conffiles[0]))
		if !bytes.HasSuffix(conf, []byte(localChange)) {
			t.Errorf("%s: the upgrade lost the local change to %s", pkg, want.conffiles[0])
		}
	}
	for p, data := range before {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s changed by the upgrade (err %v)", p, err)
		}
	}
	if got := fileMode(t, key); got != "-rw------- "+ids {
		t.Errorf("node key after upgrade: %s, want -rw------- %s", got, ids)
	}
}

func checkRemovePurge(t *testing.T, ctx context.Context, root string) {
	chrootCmd(t, ctx, root, "dpkg", "--remove", "gpumeter", "voucher-authority")
	for pkg, want := range shipped {
		if _, err := os.Stat(filepath.Join(root, "usr/bin", pkg)); !os.IsNotExist(err) {
			t.Errorf("%s: /usr/bin/%s still there after remove (%v)", pkg, pkg, err)
		}
		conf, _ := os.ReadFile(filepath.Join(root, want.conffiles[0]))
		if !bytes.HasSuffix(conf, []byte(localChange)) {
			t.Errorf("%s: remove took the changed config %s", pkg, want.conffiles[0])
		}
		if got := installedVersion(t, ctx, root, pkg); !strings.HasSuffix(got, " rc ") {
			t.Errorf("%s after remove: %q, want state rc (config files left)", pkg, got)
		}
	}

	chrootCmd(t, ctx, root, "dpkg", "--purge", "gpumeter", "voucher-authority")
	for pkg, want := range shipped {
		if _, err := os.Stat(filepath.Join(root, want.conffiles[0])); !os.IsNotExist(err) {
			t.Errorf("%s: %s still there after purge (%v)", pkg, want.conffiles[0], err)
		}
		// The state stays, by decision: the key and signed records the
		// authority may not have yet, or the authority's database.
		if _, err := os.Stat(filepath.Join(root, "var/lib", pkg)); err != nil {
			t.Errorf("%s: purge removed /var/lib/%s: %v", pkg, pkg, err)
		}
		if _, ok := lookupUser(t, root, pkg); !ok {
			t.Errorf("%s: purge removed the system user", pkg)
		}
	}
	for _, p := range []string{"var/lib/gpumeter/node.key", "var/lib/gpumeter/spool.db", "var/lib/voucher-authority/authority.db"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("purge removed /%s: %v", p, err)
		}
	}
}
