// Tests of what agencies install and watch: the Debian packages (built with nfpm, linted, installed into a
// throwaway root with dpkg, units verified with systemd-analyze), the OCI images (config read back, root
// file system extracted and run with chroot as the image's user), and the Prometheus rules and dashboard
// (promtool, and a real Prometheus scraping a real hub and connectors).
//
// Each test skips, naming the Debian package to install, when a tool it needs is missing; CI installs them
// all. By default the tests package the binaries the federation tests build (with -race under -race);
// MYDATA_PACKAGING_DIR=bin (what `make packaging-test` sets) makes them test the release .debs and images
// that `make deb image` wrote there instead.
package packaging_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/federationtest"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	federationtest.RemoveBinaries()
	os.Exit(code)
}

// aptPackage names the Debian package that provides each tool the tests use.
var aptPackage = map[string]string{
	"dpkg": "dpkg", "dpkg-deb": "dpkg", "useradd": "passwd", "strip": "binutils", "lintian": "lintian",
	"systemd-analyze": "systemd", "prometheus": "prometheus", "promtool": "prometheus", "chroot": "coreutils",
	"man": "man-db",
}

// need skips the test unless every tool is on PATH.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: apt-get install %s (CI installs it)", tool, aptPackage[tool])
		}
	}
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("not root: %s (CI runs as root)", why)
	}
}

func root(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// run runs a command and fails the test with its output if it fails.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// prebuilt returns the files matching pattern in MYDATA_PACKAGING_DIR, if it is set.
func prebuilt(t *testing.T, pattern string) []string {
	dir := os.Getenv("MYDATA_PACKAGING_DIR")
	if dir == "" {
		return nil
	}
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		t.Fatalf("MYDATA_PACKAGING_DIR=%s holds no %s: run make deb image first", dir, pattern)
	}
	return m
}

var (
	debsOnce sync.Once
	debsDir  string
	debsErr  error
)

// debs returns the two packages, built once per test binary from the test binaries (or prebuilt).
func debs(t *testing.T) (hub, connector string, release bool) {
	t.Helper()
	if m := prebuilt(t, "mydata-*_amd64.deb"); m != nil {
		for _, p := range m {
			switch {
			case strings.HasPrefix(filepath.Base(p), "mydata-hub_"):
				hub = p
			case strings.HasPrefix(filepath.Base(p), "mydata-connector_"):
				connector = p
			}
		}
		if hub == "" || connector == "" || len(m) != 2 {
			t.Fatalf("want exactly one mydata-hub and one mydata-connector .deb, found %v", m)
		}
		return hub, connector, true
	}
	hubBin, connBin := federationtest.Binaries(t)
	debsOnce.Do(func() {
		debsDir, debsErr = os.MkdirTemp("", "mydata-debs-")
		if debsErr != nil {
			return
		}
		_, debsErr = runErr(root(t), []string{"HUB_BIN=" + hubBin, "CONNECTOR_BIN=" + connBin, "VERSION=v0.0.1"},
			filepath.Join(root(t), "packaging/deb/build.sh"), debsDir)
	})
	if debsErr != nil {
		t.Fatal(debsErr)
	}
	t.Cleanup(func() { os.RemoveAll(debsDir) })
	return filepath.Join(debsDir, "mydata-hub_0.0.1_amd64.deb"), filepath.Join(debsDir, "mydata-connector_0.0.1_amd64.deb"), false
}

func TestDebianPackages(t *testing.T) {
	t.Parallel()
	need(t, "dpkg", "dpkg-deb", "useradd", "strip")
	needRoot(t, "dpkg --root gives files their owners")
	hubDeb, connDeb, release := debs(t)

	t.Run("lintian", func(t *testing.T) {
		t.Parallel()
		need(t, "lintian")
		args := []string{"--pedantic", "--fail-on", "warning,pedantic"}
		if !release {
			// The federation tests' binaries are not built with -buildmode=pie (make deb's are); every other
			// tag must stay away.
			args = append(args, "--suppress-tags", "hardening-no-pie")
		}
		out := run(t, "", nil, "lintian", append(args, hubDeb, connDeb)...)
		for _, line := range strings.Split(out, "\n") {
			if line != "" && !strings.Contains(line, "running with root privileges") {
				t.Errorf("lintian: %s", line)
			}
		}
	})

	t.Run("control", func(t *testing.T) {
		for _, deb := range []string{hubDeb, connDeb} {
			info := run(t, "", nil, "dpkg-deb", "--field", deb, "Package", "Architecture", "Depends", "Section")
			for _, want := range []string{"Architecture: amd64", "Depends: libc6 (>= 2.34), passwd", "Section: net"} {
				if !strings.Contains(info, want) {
					t.Errorf("%s: control has no %q:\n%s", filepath.Base(deb), want, info)
				}
			}
		}
	})

	t.Run("install", func(t *testing.T) { testInstall(t, hubDeb, connDeb) })
}

// dpkgRoot makes an empty tree dpkg can install into: its database, and the account files useradd edits.
func dpkgRoot(t *testing.T) string {
	r := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log", "etc", "lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n",
		"etc/shadow": "root:*:20000:0:99999:7:::\n", "etc/gshadow": "root:*::\n",
	}
	if b, err := os.ReadFile("/etc/login.defs"); err == nil { // the system UID range useradd --system picks from
		files["etc/login.defs"] = string(b)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// dpkg runs dpkg on the tree r. --force-script-chrootless runs the maintainer scripts on this system with
// DPKG_ROOT=r (they honour it) instead of chrooting into a tree that has no shell; --force-depends because
// the tree has no libc6 package.
func dpkg(t *testing.T, r string, args ...string) string {
	t.Helper()
	return run(t, "", nil, "dpkg", append([]string{"--root=" + r, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)...)
}

func testInstall(t *testing.T, hubDeb, connDeb string) {
	r := dpkgRoot(t)
	dpkg(t, r, "--install", hubDeb, connDeb)

	// The system user.
	uid, gid, entry := lookupUser(t, r, "mydata")
	if uid <= 0 || uid >= 1000 {
		t.Errorf("mydata has uid %d, want a system uid (1..999): %s", uid, entry)
	}
	if !strings.HasSuffix(entry, ":/var/lib/mydata:/usr/sbin/nologin") {
		t.Errorf("mydata's passwd entry %q: want home /var/lib/mydata and shell /usr/sbin/nologin", entry)
	}
	if g, err := os.ReadFile(filepath.Join(r, "etc/group")); err != nil || !strings.Contains(string(g), fmt.Sprintf("mydata:x:%d:", gid)) {
		t.Errorf("no mydata group with gid %d in etc/group: %s", gid, g)
	}

	// Files, owners and modes.
	wants := []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{"usr/bin/mydata-hub", 0o755, 0, 0},
		{"usr/bin/mydata-connector", 0o755, 0, 0},
		{"etc/mydata/hub.yaml", 0o644, 0, 0},
		{"etc/mydata/connector.yaml", 0o644, 0, 0},
		{"lib/systemd/system/mydata-hub.service", 0o644, 0, 0},
		{"lib/systemd/system/mydata-connector.service", 0o644, 0, 0},
		{"usr/share/man/man1/mydata-hub.1.gz", 0o644, 0, 0},
		{"usr/share/man/man1/mydata-connector.1.gz", 0o644, 0, 0},
		{"usr/share/doc/mydata-hub/copyright", 0o644, 0, 0},
		{"usr/share/doc/mydata-hub/cluster.md.gz", 0o644, 0, 0},
		{"usr/share/doc/mydata-connector/changelog.gz", 0o644, 0, 0},
		{"usr/share/doc/mydata-connector/operations.md.gz", 0o644, 0, 0},
		{"var/lib/mydata", os.ModeDir | 0o755, 0, 0},
		{"var/lib/mydata/hub", os.ModeDir | 0o700, uid, gid},
		{"var/lib/mydata/connector", os.ModeDir | 0o700, uid, gid},
	}
	for _, w := range wants {
		checkFile(t, filepath.Join(r, w.path), w.mode, w.uid, w.gid)
	}

	// The conffiles are conf/'s examples, registered as conffiles, with the packaged data_dir.
	for _, c := range []string{"hub", "connector"} {
		want, _ := os.ReadFile(filepath.Join(root(t), "conf", c+".yaml"))
		got, _ := os.ReadFile(filepath.Join(r, "etc/mydata", c+".yaml"))
		if !bytes.Equal(got, want) {
			t.Errorf("/etc/mydata/%s.yaml differs from conf/%s.yaml", c, c)
		}
		if !regexp.MustCompile(`(?m)^data_dir: /var/lib/mydata/` + c + `$`).Match(got) {
			t.Errorf("/etc/mydata/%s.yaml does not say data_dir: /var/lib/mydata/%s", c, c)
		}
		cf, _ := os.ReadFile(filepath.Join(r, "var/lib/dpkg/info/mydata-"+c+".conffiles"))
		if strings.TrimSpace(string(cf)) != "/etc/mydata/"+c+".yaml" {
			t.Errorf("mydata-%s.conffiles = %q, want /etc/mydata/%s.yaml", c, cf, c)
		}
	}

	// The installed binaries run.
	for _, c := range []string{"hub", "connector"} {
		bin := filepath.Join(r, "usr/bin/mydata-"+c)
		if out := run(t, "", nil, bin, "version"); !strings.HasPrefix(out, "mydata-"+c+" ") {
			t.Errorf("mydata-%s version printed %q", c, out)
		}
		if out := run(t, "", nil, bin, "--help"); !strings.Contains(out, "Usage:") {
			t.Errorf("mydata-%s --help printed no usage: %q", c, out)
		}
	}

	t.Run("man pages", func(t *testing.T) {
		need(t, "man")
		for _, c := range []string{"hub", "connector"} {
			cmd := exec.Command("man", "--warnings", "-l", "-Tutf8", filepath.Join(r, "usr/share/man/man1/mydata-"+c+".1.gz"))
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || stderr.Len() > 0 || !bytes.Contains(out, []byte("mydata-"+c)) {
				t.Errorf("man mydata-%s: %v: %s", c, err, stderr.String())
			}
		}
	})

	t.Run("systemd units", func(t *testing.T) { testUnits(t, r) })

	// Upgrading (here: reinstalling) keeps an administrator's edits to a conffile and the state.
	conf := filepath.Join(r, "etc/mydata/connector.yaml")
	edited := []byte("# edited by the agency\ntrust_domain: mydata.example\norg: moi\nname: moi-dp\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(r, "var/lib/mydata/connector/audit.db")
	if err := os.WriteFile(state, []byte("records"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg(t, r, "--force-confold", "--install", connDeb)
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, edited) {
		t.Errorf("reinstalling replaced the edited /etc/mydata/connector.yaml")
	}
	checkFile(t, filepath.Join(r, "var/lib/mydata/connector"), os.ModeDir|0o700, uid, gid)

	// Purge keeps state that is not empty (the audit log must be kept two years; the hub's holds the root
	// CA key) and removes an empty state directory.
	out := dpkg(t, r, "--purge", "mydata-connector", "mydata-hub")
	if _, err := os.Stat(state); err != nil {
		t.Errorf("purge deleted the connector's state: %v", err)
	}
	if !strings.Contains(out, "kept /var/lib/mydata/connector") {
		t.Errorf("purge did not say it kept the connector's state:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(r, "var/lib/mydata/hub")); !os.IsNotExist(err) {
		t.Errorf("purge left the hub's empty state directory: %v", err)
	}
	for _, p := range []string{"usr/bin/mydata-hub", "usr/bin/mydata-connector", "etc/mydata/connector.yaml", "lib/systemd/system/mydata-hub.service"} {
		if _, err := os.Stat(filepath.Join(r, p)); !os.IsNotExist(err) {
			t.Errorf("purge left /%s", p)
		}
	}
}

func lookupUser(t *testing.T, r, name string) (uid, gid int, entry string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			return uid, gid, line
		}
	}
	t.Fatalf("postinst made no %s user:\n%s", name, b)
	return 0, 0, ""
}

func checkFile(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	if st, ok := statOwner(fi); ok && (st[0] != uid || st[1] != gid) {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, st[0], st[1], uid, gid)
	}
}

func statOwner(fi os.FileInfo) ([2]int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]int{}, false
	}
	return [2]int{int(st.Uid), int(st.Gid)}, true
}

// The hardening every unit must keep; systemd-analyze security scores it, this names what must not go.
var hardening = []string{
	"User=mydata", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
	"PrivateDevices=yes", "CapabilityBoundingSet=\n", "AmbientCapabilities=\n",
	"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
	"ProtectKernelLogs=yes", "ProtectControlGroups=yes", "LockPersonality=yes", "RestrictNamespaces=yes",
	"SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes", "UMask=0077",
}

func testUnits(t *testing.T, r string) {
	need(t, "systemd-analyze")
	// verify resolves the units' dependencies (sysinit.target, multi-user.target …) under --root: give the
	// tree this system's targets and slices, and nothing else of it.
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	sliceUnits, _ := filepath.Glob("/lib/systemd/system/*.slice")
	for _, src := range append(targets, sliceUnits...) {
		dst := filepath.Join(r, "lib/systemd/system", filepath.Base(src))
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if b, err := os.ReadFile(src); err == nil {
			os.WriteFile(dst, b, 0o644)
		}
	}
	// The connector's ExecReload runs kill, which verify looks for under --root; the system has it from procps.
	if b, err := os.ReadFile("/usr/bin/kill"); err == nil {
		os.WriteFile(filepath.Join(r, "usr/bin/kill"), b, 0o755)
	}
	for _, c := range []struct{ name, memory string }{{"mydata-hub", "MemoryMax=1G"}, {"mydata-connector", "MemoryMax=512M"}} {
		unit := c.name + ".service"
		// --man=no: the man pages are in the tree, not where man looks; the man pages test reads them.
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+r, unit)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			// Any output is a finding: an unknown key is only a warning for systemd.
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
		out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--root="+r, "--threshold=20", "--no-pager", unit).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: exposure above 2.0 (%v):\n%s", unit, err, out)
		} else if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out); m != nil {
			t.Logf("%s: exposure %s (0 best, 10 worst)", unit, m[1])
		}
		b, _ := os.ReadFile(filepath.Join(r, "lib/systemd/system", unit))
		wants := append(hardening, c.memory, "ReadWritePaths=/var/lib/mydata/"+strings.TrimPrefix(c.name, "mydata-"))
		if c.name == "mydata-connector" {
			wants = append(wants, "ExecReload=kill -HUP $MAINPID") // systemctl reload: the datasets are read again
		}
		for _, want := range wants {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %q", unit, strings.TrimSpace(want))
			}
		}
	}
}

// ---- OCI images -----------------------------------------------------------------------------------------

var (
	imagesOnce sync.Once
	imagesDir  string
	imagesErr  error
)

// images returns the two OCI archives, built once per test binary (or prebuilt).
func images(t *testing.T) map[string]string {
	t.Helper()
	if m := prebuilt(t, "mydata-*-image.tar"); m != nil {
		out := map[string]string{}
		for _, p := range m {
			out[strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "mydata-"), "-image.tar")] = p
		}
		return out
	}
	hubBin, connBin := federationtest.Binaries(t)
	imagesOnce.Do(func() {
		if imagesDir, imagesErr = os.MkdirTemp("", "mydata-images-"); imagesErr != nil {
			return
		}
		probe := filepath.Join(imagesDir, "mydata-probe")
		if _, imagesErr = runErr(root(t), []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", probe, "./packaging/docker/mydata-probe"); imagesErr != nil {
			return
		}
		ocibuild := filepath.Join(imagesDir, "ocibuild")
		if _, imagesErr = runErr(filepath.Join(root(t), "packaging/docker/ocibuild"), nil, "go", "build", "-o", ocibuild, "."); imagesErr != nil {
			return
		}
		for c, bin := range map[string]string{"hub": hubBin, "connector": connBin} {
			if _, imagesErr = runErr(filepath.Join(root(t), "packaging/docker"), nil, ocibuild, "-component", c, "-binary", bin, "-probe", probe,
				"-config", c+".yaml", "-version", "0.0.0-test", "-revision", "0123abc", "-out", filepath.Join(imagesDir, "mydata-"+c+"-image.tar")); imagesErr != nil {
				return
			}
		}
	})
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	t.Cleanup(func() { os.RemoveAll(imagesDir) })
	return map[string]string{"hub": filepath.Join(imagesDir, "mydata-hub-image.tar"), "connector": filepath.Join(imagesDir, "mydata-connector-image.tar")}
}

// ociImage is what the tests read back from an OCI archive, with the standard library only.
type ociImage struct {
	blobs    map[string][]byte
	refName  string
	manifest struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
		} `json:"layers"`
	}
	config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User         string              `json:"User"`
			Entrypoint   []string            `json:"Entrypoint"`
			Cmd          []string            `json:"Cmd"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			Volumes      map[string]struct{} `json:"Volumes"`
			Labels       map[string]string   `json:"Labels"`
			WorkingDir   string              `json:"WorkingDir"`
			Healthcheck  struct {
				Test []string `json:"Test"`
			} `json:"Healthcheck"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
}

func readOCI(t *testing.T, path string) *ociImage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := &ociImage{blobs: map[string][]byte{}}
	var index []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		switch {
		case h.Name == "index.json":
			index = b
		case strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			digest := "sha256:" + strings.TrimPrefix(h.Name, "blobs/sha256/")
			if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != digest {
				t.Fatalf("%s: blob %s does not match its digest", path, h.Name)
			}
			img.blobs[digest] = b
		}
	}
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s: index.json with one manifest expected: %v %s", path, err, index)
	}
	img.refName = idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	if err := json.Unmarshal(img.blobs[idx.Manifests[0].Digest], &img.manifest); err != nil {
		t.Fatalf("%s: manifest: %v", path, err)
	}
	if err := json.Unmarshal(img.blobs[img.manifest.Config.Digest], &img.config); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	return img
}

// extract unpacks the layers in order into dir, as the runtime would, keeping owners and modes.
func (img *ociImage) extract(t *testing.T, dir string) {
	t.Helper()
	if len(img.manifest.Layers) != len(img.config.RootFS.DiffIDs) {
		t.Fatalf("%d layers but %d diff_ids", len(img.manifest.Layers), len(img.config.RootFS.DiffIDs))
	}
	for i, l := range img.manifest.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Fatalf("layer %d has media type %s", i, l.MediaType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(img.blobs[l.Digest]))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != img.config.RootFS.DiffIDs[i] {
			t.Fatalf("layer %d does not match its diff_id", i)
		}
		tr := tar.NewReader(bytes.NewReader(raw))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(h.Name, "..") || strings.HasPrefix(h.Name, "/") {
				t.Fatalf("layer %d: unsafe path %q", i, h.Name)
			}
			if h.Mode&(04000|02000) != 0 {
				t.Errorf("layer %d: %s is setuid or setgid", i, h.Name)
			}
			p := filepath.Join(dir, h.Name)
			switch h.Typeflag {
			case tar.TypeDir:
				os.MkdirAll(p, 0o755)
			case tar.TypeReg:
				b, _ := io.ReadAll(tr)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			case tar.TypeSymlink:
				os.Symlink(h.Linkname, p)
			default:
				t.Fatalf("layer %d: %s has unexpected type %c", i, h.Name, h.Typeflag)
			}
			if h.Typeflag != tar.TypeSymlink {
				if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
					t.Fatal(err)
				}
				mode := os.FileMode(h.Mode & 0o777)
				if h.Mode&0o1000 != 0 {
					mode |= os.ModeSticky
				}
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestImages(t *testing.T) {
	t.Parallel()
	need(t, "chroot")
	needRoot(t, "the test runs the image's binaries with chroot as the image's user")
	imgs := images(t)
	for _, c := range []struct {
		name, telemetry string
		ports           []string
	}{
		{"hub", "9443", []string{"8443/tcp", "8300/tcp", "8080/tcp", "9443/tcp"}},
		{"connector", "9444", []string{"7443/udp", "7443/tcp", "9444/tcp", "8442/tcp"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img := readOCI(t, imgs[c.name])
			cfg := img.config.Config
			bin := "/usr/bin/mydata-" + c.name
			state := "/var/lib/mydata/" + c.name
			if img.manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" || img.config.Architecture != "amd64" || img.config.OS != "linux" {
				t.Errorf("manifest %s for %s/%s, want an OCI manifest for linux/amd64", img.manifest.MediaType, img.config.OS, img.config.Architecture)
			}
			if !strings.HasPrefix(img.refName, "mydata-"+c.name+":") {
				t.Errorf("reference name %q", img.refName)
			}
			if cfg.User != "10001:10001" {
				t.Errorf("User = %q, want the non-root 10001:10001", cfg.User)
			}
			if !slices.Equal(cfg.Entrypoint, []string{bin}) || !slices.Equal(cfg.Cmd, []string{"serve", "--config", "/etc/mydata/" + c.name + ".yaml"}) {
				t.Errorf("Entrypoint %q Cmd %q", cfg.Entrypoint, cfg.Cmd)
			}
			if _, ok := cfg.Volumes[state]; !ok || len(cfg.Volumes) != 1 || cfg.WorkingDir != state {
				t.Errorf("Volumes %v WorkingDir %q, want %s", cfg.Volumes, cfg.WorkingDir, state)
			}
			for _, p := range c.ports {
				if _, ok := cfg.ExposedPorts[p]; !ok {
					t.Errorf("port %s not exposed: %v", p, cfg.ExposedPorts)
				}
			}
			for _, l := range []string{"title", "description", "version", "revision", "source", "created", "vendor", "licenses"} {
				if cfg.Labels["org.opencontainers.image."+l] == "" {
					t.Errorf("no label org.opencontainers.image.%s: %v", l, cfg.Labels)
				}
			}
			if want := []string{"CMD", "/usr/bin/mydata-probe", "http://127.0.0.1:" + c.telemetry + "/healthz"}; !slices.Equal(cfg.Healthcheck.Test, want) {
				t.Errorf("Healthcheck %q, want %q", cfg.Healthcheck.Test, want)
			}

			rootfs := t.TempDir()
			img.extract(t, rootfs)
			checkFile(t, filepath.Join(rootfs, state), os.ModeDir|0o700, 10001, 10001)
			checkFile(t, filepath.Join(rootfs, "tmp"), os.ModeDir|os.ModeSticky|0o777, 0, 0)
			if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd")); !strings.Contains(string(b), "mydata:x:10001:10001:") {
				t.Errorf("etc/passwd has no mydata user 10001:\n%s", b)
			}
			// The image's libraries are complete: its binary runs with nothing but the image around it.
			userspec := "--userspec=10001:10001"
			out := run(t, "", nil, "chroot", userspec, rootfs, bin, "version")
			if !strings.Contains(out, "mydata-"+c.name+" ") {
				t.Errorf("%s version in the image printed %q", bin, out)
			}
			if c.name == "hub" {
				testHubInImage(t, rootfs)
			}
		})
	}
}

// testHubInImage runs the hub from the image's root as the image's user, with its state in the image's
// volume directory, and probes it with the image's own HEALTHCHECK program: SQLite (cgo), the CA and raft
// all work with the image's libraries, and the health check sees it ready.
func testHubInImage(t *testing.T, rootfs string) {
	api, raft, portal, tel := federationtest.FreeTCP(t), federationtest.FreeTCP(t), federationtest.FreeTCP(t), federationtest.FreeTCP(t)
	conf := fmt.Sprintf("trust_domain: mydata.test\nnode_id: hub-1\ndata_dir: /var/lib/mydata/hub\napi:\n  listen: %s\nraft:\n  listen: %s\nportal:\n  listen: %s\ntelemetry:\n  listen: %s\n", api, raft, portal, tel)
	if err := os.WriteFile(filepath.Join(rootfs, "etc/mydata/test.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command("chroot", "--userspec=10001:10001", rootfs, "/usr/bin/mydata-hub", "serve", "--config", "/etc/mydata/test.yaml")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("hub log:\n%s", log.String())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := runErr("", nil, "chroot", "--userspec=10001:10001", rootfs, "/usr/bin/mydata-probe", "http://"+tel+"/readyz")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the image's health probe never saw the hub ready: %s", out)
		}
		select {
		case <-done:
			t.Fatalf("the hub in the image exited")
		case <-time.After(200 * time.Millisecond):
		}
	}
	checkFile(t, filepath.Join(rootfs, "var/lib/mydata/hub/ca/root.key"), 0o600, 10001, 10001)
	if _, err := os.Stat(filepath.Join(rootfs, "var/lib/mydata/hub/state.db")); err != nil {
		t.Errorf("no state.db in the image's volume: %v", err)
	}
}

// ---- Prometheus, rules and dashboard --------------------------------------------------------------------

// metricNames returns every metric the code registers (Name: "mydata_…" in non-test Go files).
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	// Name: in the *Opts of the client library's constructors, or the first argument of NewDesc (collectors
	// that make their metrics at scrape time).
	re := regexp.MustCompile(`(?:Name:\s+|prometheus\.NewDesc\(\s*)"(mydata_[a-z0-9_]+)"`)
	for _, dir := range []string{"hub", "connector", "pkg"} {
		filepath.Walk(filepath.Join(root(t), dir), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, _ := os.ReadFile(p)
			for _, m := range re.FindAllSubmatch(b, -1) {
				names[string(m[1])] = true
			}
			return nil
		})
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metrics in the code: %v", len(names), names)
	}
	return names
}

// requested are metrics the rules and dashboard use that the product does not export yet.
var requested = map[string]string{
	"mydata_connector_audit_verify_ok": "1 while the audit log's hash chain and anchored head verify, 0 when not",
}

func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root(t), "docs/metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := metricNames(t)
	for n := range names {
		if !bytes.Contains(doc, []byte("`"+n+"`")) {
			t.Errorf("docs/metrics.md does not describe %s", n)
		}
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `(mydata_[a-z0-9_]+)`").FindAllSubmatch(doc, -1) {
		if n := string(m[1]); !names[n] && requested[n] == "" {
			t.Errorf("docs/metrics.md describes %s, which the code does not register", n)
		}
	}
}

// exprs returns every PromQL expression in the rules file and the dashboard.
func exprs(t *testing.T) (rules, dashboard []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "packaging/prometheus/mydata-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			rules = append(rules, r.Expr)
		}
	}
	b, err = os.ReadFile(filepath.Join(root(t), "packaging/prometheus/grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					dashboard = append(dashboard, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	walk(d)
	if len(rules) < 10 || len(dashboard) < 20 {
		t.Fatalf("found %d rule and %d dashboard expressions", len(rules), len(dashboard))
	}
	return rules, dashboard
}

// The rules and dashboard name only metrics that exist (or are requested from the product).
func TestRulesAndDashboardUseRealMetrics(t *testing.T) {
	names := metricNames(t)
	rules, dash := exprs(t)
	re := regexp.MustCompile(`\bmydata_[a-z0-9_]+`)
	series := regexp.MustCompile(`_(bucket|sum|count)$`) // a histogram's or summary's series
	for _, e := range append(rules, dash...) {
		for _, n := range re.FindAllString(e, -1) {
			if base := series.ReplaceAllString(n, ""); base != n && names[base] {
				n = base
			}
			if !names[n] && requested[n] == "" {
				t.Errorf("%q uses %s, which no code registers", e, n)
			}
		}
	}
}

func TestPrometheus(t *testing.T) {
	t.Parallel()
	need(t, "promtool", "prometheus")
	promDir := filepath.Join(root(t), "packaging/prometheus")
	run(t, promDir, nil, "promtool", "check", "rules", "mydata-rules.yml")
	run(t, promDir, nil, "promtool", "test", "rules", "mydata-rules.test.yml")

	// A federation: a hub, a data provider and a service provider that has reached it over QUIC.
	hub := federationtest.StartHub(t, federationtest.HubOptions{})
	dp := hub.EnrolledConnector("moi", "moi-dp", federationtest.ConnectorOptions{Roles: "dp"})
	sp := hub.EnrolledConnector("demobank", "bank-sp", federationtest.ConnectorOptions{Roles: "sp"})
	if err := sp.Ping(dp); err != nil {
		t.Fatal(err)
	}

	// The shipped prometheus.yml and rules, with this federation's targets and a 1 s rhythm.
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join(promDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.ReplaceAll(conf, []byte("scrape_interval: 15s"), []byte("scrape_interval: 1s"))
	conf = bytes.ReplaceAll(conf, []byte("evaluation_interval: 15s"), []byte("evaluation_interval: 1s"))
	conf = bytes.ReplaceAll(conf, []byte("scrape_timeout: 10s"), []byte("scrape_timeout: 1s"))
	rules, _ := os.ReadFile(filepath.Join(promDir, "mydata-rules.yml"))
	targets := func(addrs ...string) string {
		b, _ := json.Marshal([]map[string]any{{"targets": addrs}})
		return string(b)
	}
	for name, content := range map[string]string{
		"prometheus.yml": string(conf), "mydata-rules.yml": string(rules),
		"targets/hub.json": targets(hub.Telem), "targets/connectors.json": targets(dp.Telem, sp.Telem),
	} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, nil, "promtool", "check", "config", "prometheus.yml")
	addr := federationtest.FreeTCP(t)
	var log bytes.Buffer
	cmd := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	prom := "http://" + addr
	federationtest.WaitHTTP(t, prom+"/-/ready", 30*time.Second)

	// Every target up.
	federationtest.Eventually(t, 30*time.Second, "every target up", func() error {
		var r struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := api(prom+"/api/v1/targets", &r); err != nil {
			return err
		}
		if len(r.ActiveTargets) != 3 {
			return fmt.Errorf("%d targets, want 3", len(r.ActiveTargets))
		}
		for _, tg := range r.ActiveTargets {
			if tg.Health != "up" {
				return fmt.Errorf("%s %s is %s: %s", tg.Labels["job"], tg.Labels["instance"], tg.Health, tg.LastError)
			}
		}
		return nil
	})

	// The key series, with healthy values.
	for _, q := range []struct {
		expr string
		n    int
	}{
		{`mydata_build_info{job="mydata-hub", component="hub"}`, 1},
		{`mydata_build_info{job="mydata-connector", component="connector"}`, 2},
		{`mydata_hub_raft_has_leader == 1`, 1},
		{`mydata_hub_raft_state{state="Leader"} == 1`, 1},
		{`mydata_hub_raft_applied_index > 0`, 1},
		{`mydata_hub_svid_expiry_seconds > 3600`, 1},
		{`mydata_connector_svid_expiry_seconds > 3600`, 2},
		{`mydata_connector_hub_reachable == 1`, 2},
		{`mydata_connector_directory_expiry_seconds > 86400`, 2},
		{`mydata_connector_directory_age_seconds >= 0`, 2},
		{`mydata_connector_directory_version > 0`, 2},
		{`mydata_connector_receipts_backlog == 0`, 2},
		{`mydata_connector_quic_connections_open`, 2},
		// The data provider took the service provider's ping.
		{`mydata_connector_quic_handshakes_total{direction="in", outcome="ok"} > 0`, 1},
		{`process_resident_memory_bytes{job=~"mydata-.*"}`, 3},
	} {
		var got int
		federationtest.Eventually(t, 15*time.Second, q.expr, func() error {
			res, err := query(prom, q.expr)
			if err != nil {
				return err
			}
			if got = len(res); got != q.n {
				return fmt.Errorf("%d series, want %d", got, q.n)
			}
			return nil
		})
	}

	// Every rule loaded and evaluated without error, and none pending or firing on a healthy federation.
	federationtest.Eventually(t, 20*time.Second, "rules evaluated", func() error {
		var r struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					State     string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := api(prom+"/api/v1/rules", &r); err != nil {
			return err
		}
		if len(r.Groups) != 2 {
			return fmt.Errorf("%d rule groups loaded, want 2", len(r.Groups))
		}
		for _, g := range r.Groups {
			for _, rule := range g.Rules {
				if rule.Health != "ok" {
					return fmt.Errorf("%s/%s: health %q %s", g.Name, rule.Name, rule.Health, rule.LastError)
				}
				if rule.State != "" && rule.State != "inactive" {
					t.Errorf("alert %s is %s on a healthy federation", rule.Name, rule.State)
				}
			}
		}
		return nil
	})

	// Every dashboard expression parses and evaluates (with Grafana's variables replaced).
	_, dash := exprs(t)
	repl := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	for _, e := range dash {
		if _, err := query(prom, repl.Replace(e)); err != nil {
			t.Errorf("dashboard expression %q: %v", e, err)
		}
	}
}

func api(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&env); err != nil {
		return fmt.Errorf("%s: %v", u, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", u, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

func query(prom, expr string) ([]json.RawMessage, error) {
	var r struct {
		Result []json.RawMessage `json:"result"`
	}
	err := api(prom+"/api/v1/query?query="+url.QueryEscape(expr), &r)
	return r.Result, err
}

// ---- Dockerfile, compose and the configurations shipped with them ---------------------------------------

// TestConfigsLoad loads every configuration the packages and images ship with the real binaries: an unknown
// key or a bad value fails here, not on an agency's machine. The commands stop right after the config is
// accepted (a malformed token, a hub that never started), which is what the expected errors say.
func TestConfigsLoad(t *testing.T) {
	hubBin, connBin := federationtest.Binaries(t)
	r := root(t)
	files, _ := filepath.Glob(filepath.Join(r, "packaging/docker/compose/*.yaml"))
	files = append(files, filepath.Join(r, "conf/hub.yaml"), filepath.Join(r, "conf/connector.yaml"),
		filepath.Join(r, "packaging/docker/hub.yaml"), filepath.Join(r, "packaging/docker/connector.yaml"))
	for _, f := range files {
		if filepath.Base(f) == "prometheus.yml" {
			continue
		}
		var out string
		var err error
		var want string
		if filepath.Base(f) == "hub.yaml" {
			out, err = federationtest.Run(hubBin, "ca", "fingerprint", "--config", f)
			want = "read the hub's bundle"
		} else {
			out, err = federationtest.Run(connBin, "enroll", "--config", f, "--token", "x")
			want = "malformed join token"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s does not load: %v %s", strings.TrimPrefix(f, r+"/"), err, out)
		}
	}
}

// dockerfile is a Dockerfile's instructions by stage, continuation lines joined.
type dockerfile struct {
	args   map[string]string   // ARG defaults before the first FROM
	stages map[string][]string // stage name -> instructions ("FROM …" first)
	order  []string
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{args: map[string]string{}, stages: map[string][]string{}}
	var cur string
	var buf strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if buf.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			buf.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		buf.WriteString(trimmed)
		ins := buf.String()
		buf.Reset()
		fields := strings.Fields(ins)
		switch kw := strings.ToUpper(fields[0]); {
		case kw == "FROM":
			if len(fields) != 4 || !strings.EqualFold(fields[2], "AS") {
				t.Fatalf("FROM without a stage name: %s", ins)
			}
			cur = fields[3]
			d.order = append(d.order, cur)
		case kw == "ARG" && cur == "":
			name, val, _ := strings.Cut(fields[1], "=")
			d.args[name] = val
			continue
		}
		d.stages[cur] = append(d.stages[cur], ins)
	}
	return d
}

// TestDockerfile checks what hadolint would and what the images promise (hadolint itself is a Haskell binary
// that Debian does not package; see the report in docs/operations.md).
func TestDockerfile(t *testing.T) {
	r := root(t)
	d := parseDockerfile(t, filepath.Join(r, "packaging/docker/Dockerfile"))
	if !slices.Equal(d.order, []string{"build", "hub", "connector", "setup"}) {
		t.Fatalf("stages %v", d.order)
	}
	for _, name := range d.order {
		st := d.stages[name]
		from := strings.Fields(st[0])[1]
		if strings.HasPrefix(from, "${") {
			from = d.args[strings.Trim(from, "${}")]
		}
		if _, ok := d.stages[from]; !ok {
			if _, tag, ok := strings.Cut(from, ":"); !ok || tag == "latest" || tag == "" {
				t.Errorf("stage %s: base image %q has no pinned tag (hadolint DL3006/DL3007)", name, from)
			}
		}
		for _, ins := range st[1:] {
			kw := strings.ToUpper(strings.Fields(ins)[0])
			switch {
			case kw == "ADD":
				t.Errorf("stage %s: ADD (use COPY; hadolint DL3020): %s", name, ins)
			case kw == "RUN" && strings.Contains(ins, "apt-get install") && !strings.Contains(ins, "--no-install-recommends"):
				t.Errorf("stage %s: apt-get install without --no-install-recommends (DL3015)", name)
			case kw == "RUN" && strings.Contains(ins, "sudo "):
				t.Errorf("stage %s: sudo (DL3004)", name)
			case kw == "COPY" && !strings.Contains(ins, "--from="):
				for _, src := range strings.Fields(ins)[1 : len(strings.Fields(ins))-1] {
					if strings.HasPrefix(src, "--") {
						continue
					}
					if _, err := os.Stat(filepath.Join(r, src)); err != nil {
						t.Errorf("stage %s: COPY source %s: %v", name, src, err)
					}
				}
			}
		}
	}
	for _, c := range []struct{ name, telemetry, ports string }{
		{"hub", "9443", "8443/tcp 8300/tcp 8080/tcp 9443/tcp"},
		{"connector", "9444", "7443/udp 7443/tcp 9444/tcp 8442/tcp"},
	} {
		st := strings.Join(d.stages[c.name], "\n")
		for _, want := range []string{
			"USER 10001:10001",
			"VOLUME [\"/var/lib/mydata/" + c.name + "\"]",
			"EXPOSE " + c.ports,
			`CMD ["/usr/bin/mydata-probe", "http://127.0.0.1:` + c.telemetry + `/healthz"]`,
			`ENTRYPOINT ["/usr/bin/mydata-` + c.name + `"]`,
			`CMD ["serve", "--config", "/etc/mydata/` + c.name + `.yaml"]`,
			"org.opencontainers.image.title=\"mydata-" + c.name + "\"",
			"--chown=10001:10001",
		} {
			if !strings.Contains(st, want) {
				t.Errorf("stage %s lacks %q", c.name, want)
			}
		}
		if !strings.HasPrefix(strings.Fields(d.stages[c.name][len(d.stages[c.name])-1])[0], "CMD") {
			t.Errorf("stage %s does not end with CMD", c.name)
		}
		if strings.Index(st, "USER ") > strings.Index(st, "ENTRYPOINT") {
			t.Errorf("stage %s: USER after ENTRYPOINT", c.name)
		}
	}
}

func TestCompose(t *testing.T) {
	dir := filepath.Join(root(t), "packaging/docker")
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Build *struct {
				Context, Dockerfile, Target string
			} `yaml:"build"`
			Image       string         `yaml:"image"`
			Volumes     []string       `yaml:"volumes"`
			DependsOn   map[string]any `yaml:"depends_on"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var names []string
	for n := range compose.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"bank-sp", "fia-dp", "hub", "moi-dp", "prometheus", "setup"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	for name, s := range compose.Services {
		if s.Build != nil {
			if s.Build.Dockerfile != "packaging/docker/Dockerfile" || filepath.Clean(filepath.Join(dir, s.Build.Context)) != root(t) {
				t.Errorf("%s: build %+v", name, *s.Build)
			}
		}
		for _, v := range s.Volumes {
			src, rest, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := compose.Volumes[src]; !ok {
				t.Errorf("%s mounts undeclared volume %s", name, src)
			}
			if strings.HasSuffix(src, ".yaml") && strings.HasPrefix(rest, "/etc/mydata/connector.yaml") {
				// The connector's configuration names the connector the service is.
				var c struct {
					Org  string `yaml:"org"`
					Name string `yaml:"name"`
					Hub  struct {
						URL string `yaml:"url"`
					} `yaml:"hub"`
				}
				cb, _ := os.ReadFile(filepath.Join(dir, src))
				if err := yaml.Unmarshal(cb, &c); err != nil || c.Name != name || c.Hub.URL != "https://hub:8443" {
					t.Errorf("%s: %s names connector %q at %q (%v)", name, src, c.Name, c.Hub.URL, err)
				}
			}
		}
	}
	if hc := compose.Services["hub"].Healthcheck; hc == nil || !slices.Contains(hc.Test, "http://127.0.0.1:9443/readyz") {
		t.Errorf("the hub's healthcheck must probe /readyz: the setup waits for it")
	}
	setup, _ := os.ReadFile(filepath.Join(dir, "compose/setup.sh"))
	prom, _ := os.ReadFile(filepath.Join(dir, "compose/prometheus.yml"))
	for _, n := range []string{"moi-dp", "fia-dp", "bank-sp"} {
		if _, ok := compose.Services[n].DependsOn["setup"]; !ok {
			t.Errorf("%s does not wait for setup", n)
		}
		if !bytes.Contains(setup, []byte(`"`+n+` `)) {
			t.Errorf("setup.sh does not register %s", n)
		}
		if !bytes.Contains(prom, []byte(`"`+n+`:9444"`)) {
			t.Errorf("compose/prometheus.yml does not scrape %s", n)
		}
	}
}
