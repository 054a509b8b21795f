package packaging

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gpumeter/gpumeter/internal/testenv"
)

// run runs name with args in dir (the current directory when empty), with
// env added to the environment and stdin empty, and returns its output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustRun is run that fails t, with the output, when the command fails.
func mustRun(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := run(ctx, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// requireRoot skips t unless it runs as root (dpkg in a chroot, chown,
// debootstrap), or fails it under GPUMETER_TEST_REQUIRE=1: CI runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if testenv.Required() {
		t.Fatalf("needs root (and %s=1 requires it)", testenv.RequireEnv)
	}
	t.Skip("needs root: installs packages into a chroot; to run it, run the tests as root (bash .ci/run does)")
}

// debFile is one entry of `dpkg-deb -c`.
type debFile struct {
	mode  string // -rwxr-xr-x
	owner string // root/root
}

// debContents lists the regular files of a .deb by absolute path.
func debContents(t *testing.T, ctx context.Context, deb string) map[string]debFile {
	t.Helper()
	out := mustRun(t, ctx, "", nil, "dpkg-deb", "-c", deb)
	files := map[string]debFile{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// -rw-r--r-- root/root      4606 2026-11-23 10:52 ./etc/gpumeter/agent.yaml
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c %s: unexpected line %q", deb, sc.Text())
		}
		if !strings.HasPrefix(f[0], "-") {
			continue // directories, links
		}
		files[strings.TrimPrefix(f[5], ".")] = debFile{mode: f[0], owner: f[1]}
	}
	return files
}

// passwdEntry is a line of /etc/passwd.
type passwdEntry struct {
	uid, gid    int
	home, shell string
}

// lookupUser reads user from root/etc/passwd.
func lookupUser(t *testing.T, root, user string) (passwdEntry, bool) {
	t.Helper()
	f := etcEntry(t, root, "passwd", user, 7)
	if f == nil {
		return passwdEntry{}, false
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		t.Fatalf("%s/etc/passwd: bad line %q", root, strings.Join(f, ":"))
	}
	return passwdEntry{uid: uid, gid: gid, home: f[5], shell: f[6]}, true
}

// etcEntry is the fields of name's line of root/etc/file (a colon-separated
// database such as passwd or group) that has n fields, or nil.
func etcEntry(t *testing.T, root, file, name string, n int) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "etc", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) == n && f[0] == name {
			return f
		}
	}
	return nil
}

// groupMembers returns the members of group in root/etc/group.
func groupMembers(t *testing.T, root, group string) ([]string, bool) {
	t.Helper()
	f := etcEntry(t, root, "group", group, 4)
	switch {
	case f == nil:
		return nil, false
	case f[3] == "":
		return nil, true
	}
	return strings.Split(f[3], ","), true
}

// debianMirror returns the configured apt mirror serving suite, as apt's
// sources name it (one-line or deb822 format), or Debian's default.
func debianMirror(suite string) string {
	var files []string
	files = append(files, "/etc/apt/sources.list")
	for _, pattern := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if strings.HasSuffix(name, ".sources") {
			// deb822: paragraphs with URIs: and Suites:.
			for _, para := range strings.Split(string(data), "\n\n") {
				var uris, suites []string
				for _, line := range strings.Split(para, "\n") {
					k, v, _ := strings.Cut(line, ":")
					switch strings.TrimSpace(k) {
					case "URIs":
						uris = strings.Fields(v)
					case "Suites":
						suites = strings.Fields(v)
					}
				}
				for _, s := range suites {
					if s == suite && len(uris) > 0 {
						return uris[0]
					}
				}
			}
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			// deb [options] URI suite components...
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") {
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				if len(f) > 0 {
					f = f[1:]
				}
			}
			if len(f) >= 2 && f[1] == suite {
				return f[0]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// chrootCmd runs a command in root as root, with a clean PATH.
func chrootCmd(t *testing.T, ctx context.Context, root string, args ...string) string {
	t.Helper()
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
	return mustRun(t, ctx, "", env, "chroot", append([]string{root}, args...)...)
}

// fileMode describes path's type, permissions and numeric owner.
func fileMode(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := ownerOf(st)
	return fmt.Sprintf("%v %d:%d", st.Mode(), uid, gid)
}

// ownerOf returns the numeric owner of a file.
func ownerOf(st os.FileInfo) (uid, gid int) {
	sys := st.Sys().(*syscall.Stat_t)
	return int(sys.Uid), int(sys.Gid)
}

// TestEtcEntries: lookupUser and groupMembers find the named line of a
// root's passwd and group files, skip others and say when there is none.
func TestEtcEntries(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/bash\ngpumeter:x:998:997::/var/lib/gpumeter:/usr/sbin/nologin\n",
		"group":  "root:x:0:\nvideo:x:44:gpumeter,other\nempty:x:45:\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, ok := lookupUser(t, root, "gpumeter")
	if want := (passwdEntry{uid: 998, gid: 997, home: "/var/lib/gpumeter", shell: "/usr/sbin/nologin"}); !ok || u != want {
		t.Errorf("lookupUser(gpumeter) = %+v, %v; want %+v", u, ok, want)
	}
	if _, ok := lookupUser(t, root, "nobody"); ok {
		t.Error("lookupUser found a user the file does not have")
	}
	if m, ok := groupMembers(t, root, "video"); !ok || !slices.Equal(m, []string{"gpumeter", "other"}) {
		t.Errorf("groupMembers(video) = %q, %v", m, ok)
	}
	if m, ok := groupMembers(t, root, "empty"); !ok || m != nil {
		t.Errorf("groupMembers(empty) = %q, %v; want none, found", m, ok)
	}
	if _, ok := groupMembers(t, root, "absent"); ok {
		t.Error("groupMembers found a group the file does not have")
	}
}
