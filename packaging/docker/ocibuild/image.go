package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The user every image runs as. A fixed number, so that volumes keep working across rebuilds and the
// orchestrator's runAsUser can name it; not 0, and above the range distributions give to system users.
const (
	uid      = 10001
	gid      = 10001
	userName = "mydata"
)

type options struct {
	component, binary, probe, config, version, revision, out, certs string
	created                                                         time.Time
}

// component describes what differs between the two images.
type component struct {
	title, description string
	ports              []string // exposed, "port/proto"
	telemetry          string   // port of telemetry.listen in the image's configuration
}

var components = map[string]component{
	"hub": {
		title:       "mydata-hub",
		description: "MyData Federation hub node: identity, consent, CA and signed directory; no personal data at rest",
		// api (HTTPS), raft, portal, telemetry
		ports:     []string{"8443/tcp", "8300/tcp", "8080/tcp", "9443/tcp"},
		telemetry: "9443",
	},
	"connector": {
		title:       "mydata-connector",
		description: "MyData Federation connector of a data or service provider: QUIC with mutual TLS, sealed transfers, audit log",
		// QUIC, its TCP fallback, telemetry, exchange API
		ports:     []string{"7443/udp", "7443/tcp", "9444/tcp", "8442/tcp"},
		telemetry: "9444",
	},
}

func run(o options) error {
	c, ok := components[o.component]
	if !ok {
		return fmt.Errorf("-component: %q is neither hub nor connector", o.component)
	}
	for flag, v := range map[string]string{"-binary": o.binary, "-probe": o.probe, "-config": o.config, "-out": o.out} {
		if v == "" {
			return fmt.Errorf("%s is required", flag)
		}
	}
	img, err := build(o, c)
	if err != nil {
		return err
	}
	if err := validate.Image(img); err != nil {
		return fmt.Errorf("the image does not validate: %w", err)
	}
	return writeArchive(img, o)
}

func build(o options, c component) (v1.Image, error) {
	binName := "mydata-" + o.component
	stateDir := "/var/lib/mydata/" + o.component

	// Layer 1, the base: what changes only with the build machine's glibc or CA bundle.
	base := newTree("base", o.created)
	for _, d := range []string{"/etc", "/etc/ssl", "/etc/ssl/certs", "/usr", "/usr/bin", "/usr/share", "/usr/share/doc", "/var", "/var/lib"} {
		base.dir(d, 0o755, 0, 0)
	}
	base.dir("/tmp", 0o1777, 0, 0)
	base.file("/etc/passwd", 0o644, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:MyData Federation:/var/lib/mydata:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", userName, uid, gid)))
	base.file("/etc/group", 0o644, []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\nnogroup:x:65534:\n", userName, gid)))
	base.file("/etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n"))
	certs, err := os.ReadFile(o.certs)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	base.file("/etc/ssl/certs/ca-certificates.crt", 0o644, certs)
	libs, err := sharedLibraries([]string{o.binary, o.probe})
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		b, err := os.ReadFile(lib.src)
		if err != nil {
			return nil, err
		}
		base.file(lib.dst, 0o755, b)
	}
	// Licences of what the base copies from the build machine.
	for _, pkg := range []string{"libc6", "ca-certificates"} {
		if b, err := os.ReadFile("/usr/share/doc/" + pkg + "/copyright"); err == nil {
			base.file("/usr/share/doc/"+pkg+"/copyright", 0o644, b)
		}
	}

	// Layer 2, the application.
	app := newTree("app", o.created)
	app.dir("/etc/mydata", 0o755, 0, 0)
	app.dir("/var/lib/mydata", 0o755, 0, 0)
	app.dir(stateDir, 0o700, uid, gid)
	for src, dst := range map[string]string{o.binary: "/usr/bin/" + binName, o.probe: "/usr/bin/mydata-probe"} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		app.file(dst, 0o755, b)
	}
	conf, err := os.ReadFile(o.config)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	app.file("/etc/mydata/"+o.component+".yaml", 0o644, conf)

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, t := range []*tree{base, app} {
		b, err := t.tar()
		if err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		// An annotation on each layer says which it is (and keeps the manifest's in-memory and serialised
		// forms equal, which validate.Image compares).
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, Annotations: map[string]string{"org.mydatafed.layer": t.what}, History: v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "ocibuild " + t.what}})
		if err != nil {
			return nil, err
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: o.created}
	ports := map[string]struct{}{}
	for _, p := range c.ports {
		ports[p] = struct{}{}
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       c.title,
		"org.opencontainers.image.description": c.description,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.vendor":      "MyData Federation",
		"org.opencontainers.image.source":      "https://github.com/mydatafed/mydata",
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
		"org.opencontainers.image.licenses":    "NOASSERTION",
	}
	if o.revision != "" {
		labels["org.opencontainers.image.revision"] = o.revision
	}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", uid, gid),
		Entrypoint:   []string{"/usr/bin/" + binName},
		Cmd:          []string{"serve", "--config", "/etc/mydata/" + o.component + ".yaml"},
		Env:          []string{"PATH=/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		WorkingDir:   stateDir,
		ExposedPorts: ports,
		Volumes:      map[string]struct{}{stateDir: {}},
		Labels:       labels,
		StopSignal:   "SIGTERM",
		Healthcheck: &v1.HealthConfig{
			Test:        []string{"CMD", "/usr/bin/mydata-probe", "http://127.0.0.1:" + c.telemetry + "/healthz"},
			Interval:    30 * time.Second,
			Timeout:     5 * time.Second,
			StartPeriod: 30 * time.Second,
			Retries:     3,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// writeArchive writes img as an OCI image layout, tarred, with a reference name so that loaders tag it.
func writeArchive(img v1.Image, o options) error {
	dir, err := os.MkdirTemp("", "ocibuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	ref := "mydata-" + o.component + ":" + strings.NewReplacer("+", "_", "~", "_").Replace(o.version)
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref,
		// containerd (and so Docker 25+) names the loaded image after this one.
		"io.containerd.image.name": "docker.io/library/" + ref,
	})); err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	if err := tarDir(dir, tmp, o.created); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, o.out)
}

// tarDir writes the files under dir into a tar archive at dst, sorted, with fixed times and owners.
func tarDir(dir, dst string, mtime time.Time) error {
	var paths []string
	if err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Format: tar.FormatPAX}
		if info.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.IsDir() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// tree is the content of one layer.
type tree struct {
	what    string
	mtime   time.Time
	entries map[string]*tar.Header
	data    map[string][]byte
}

func newTree(what string, mtime time.Time) *tree {
	return &tree{what: what, mtime: mtime, entries: map[string]*tar.Header{}, data: map[string][]byte{}}
}

func (t *tree) dir(p string, mode int64, u, g int) {
	t.entries[p] = &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, Uid: u, Gid: g, ModTime: t.mtime, Format: tar.FormatPAX}
}

func (t *tree) file(p string, mode int64, b []byte) {
	for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.dir(d, 0o755, 0, 0)
		}
	}
	t.entries[p] = &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(b)), ModTime: t.mtime, Format: tar.FormatPAX}
	t.data[p] = b
}

func (t *tree) tar() ([]byte, error) {
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		hdr := *t.entries[p]
		if hdr.Uid == 0 {
			hdr.Uname, hdr.Gname = "root", "root"
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return nil, err
		}
		if b, ok := t.data[p]; ok {
			if _, err := tw.Write(b); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, errors.New("empty layer")
	}
	return buf.Bytes(), nil
}
