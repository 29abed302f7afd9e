package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// The rolling-upgrade guarantee: a raft log and snapshot written by an earlier release (kept under
// testdata/upgrade-*/, made by that release with `go test -tags upgradefixture -run TestWriteUpgradeFixture`) must apply on this code
// and give the same state. A fixture is written once and never regenerated: regenerating it with new code
// would prove nothing about old logs.
var upgradeFixtures = []string{"upgrade-v1"}

func TestUpgradeFromEarlierReleases(t *testing.T) {
	for _, name := range upgradeFixtures {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", name, "state.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name         string
				dropSnapshot bool
			}{
				{"snapshot then log", false},
				{"whole log", true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					n := newNode(t)
					n.bootstrap = false
					untarGz(t, filepath.Join("testdata", name, "raft.tar.gz"), n.dir)
					if tc.dropSnapshot {
						if err := os.RemoveAll(filepath.Join(n.dir, "snapshots")); err != nil {
							t.Fatal(err)
						}
					}
					_, f := n.mustStartLeader(t, nil)
					if got := dumpState(t, f); !bytes.Equal(got, want) {
						t.Errorf("state after replay differs from the state the release wrote:\n%s", diffLines(string(want), string(got)))
					}
				})
			}
		})
	}
}

// dumpState is the state as the hub's reads see it, as indented JSON: the comparison is by meaning, so a
// newer schema that keeps the meaning passes.
func dumpState(t *testing.T, f *fsm.FSM) []byte {
	t.Helper()
	d := map[string]any{}
	must := func(key string, v any, err error) {
		if err != nil {
			t.Fatalf("dump %s: %v", key, err)
		}
		d[key] = v
	}
	orgs, err := f.Orgs()
	must("orgs", orgs, err)
	conns, err := f.Connectors()
	must("connectors", conns, err)
	certs, err := f.Certificates("")
	must("certificates", certs, err)
	keys, err := f.HubKeys()
	must("hub_keys", keys, err)
	ds, err := f.Datasets()
	must("datasets", ds, err)
	svcs, err := f.Services()
	must("services", svcs, err)
	for _, h := range []string{"tok-used", "tok-live", "tok-expired"} {
		tok, err := f.Token(h)
		must("token "+h, tok, err)
	}
	for _, sub := range fixtureSubjects {
		cs, err := f.ConsentsOf([]string{sub}, 100)
		must("consents of "+sub, cs, err)
		for _, c := range cs {
			rs, err := f.Receipts(c.ID)
			must("receipts of "+c.ID, rs, err)
		}
	}
	v, err := f.DirectoryVersion()
	must("directory_version", v, err)
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// fixtureSubjects are the (made-up, checksum-valid) national IDs in the fixtures.
var fixtureSubjects = []string{"A123456789", "B223456787"}

func untarGz(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			t.Fatalf("fixture entry %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
		}
	}
	return b.String()
}
