package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/cluster"
	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

const td = "mydata.test"

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is a valid hub config whose data directory is dir.
func testConfig(t *testing.T, dir, node string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.TrustDomain, cfg.NodeID, cfg.DataDir = td, node, dir
	cfg.Raft.Listen, cfg.Raft.Advertise = "127.0.0.1:0", "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// source is a hub node's data directory with a CA and a state that has applied a few commands.
type source struct {
	cfg   config.Config
	ca    *ca.CA
	state *fsm.FSM
	orgs  []string
}

func newSource(t *testing.T) *source {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), "hub-1")
	c, _, err := ca.LoadOrCreate(cfg.CADir(), cfg.TD(), cfg.CA.RootTTL)
	if err != nil {
		t.Fatal(err)
	}
	state, err := fsm.Open(cfg.StatePath(), discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	if _, _, err := keyring.LoadOrCreateKEK(cfg.KEKPath()); err != nil {
		t.Fatal(err)
	}
	s := &source{cfg: cfg, ca: c, state: state, orgs: []string{"fia", "moi"}}
	for i, code := range s.orgs {
		data, err := fsm.Encode(&fsm.OrgAdd{Code: code, NameZh: code, NameEn: code, Type: "other", Now: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		// Indexes as raft would hand them over on a node that has run for a while.
		if r := state.Apply(&raft.Log{Index: uint64(10 + i), Term: 2, Type: raft.LogCommand, Data: data}).(fsm.Result); r.Code != fsm.OK {
			t.Fatalf("apply: %+v", r)
		}
	}
	return s
}

func (s *source) backup(t *testing.T) ([]byte, *Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := Write(&buf, s.cfg, s.state)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m
}

func TestRoundTrip(t *testing.T) {
	src := newSource(t)
	before := time.Now().UTC()
	data, m := src.backup(t)
	if m.Format != formatV1 || m.TrustDomain != td || m.Node != "hub-1" || m.Index != src.state.AppliedIndex() {
		t.Errorf("manifest %+v, want format 1 of %s/hub-1 at index %d", m, td, src.state.AppliedIndex())
	}
	if m.CreatedAt.Before(before.Add(-time.Second)) || m.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("manifest CreatedAt %v", m.CreatedAt)
	}
	// The online copy goes through a temporary directory that must not stay behind.
	if left := leftovers(t, src.cfg.DataDir, ".backup-"); len(left) > 0 {
		t.Errorf("Write left %v", left)
	}
	path := filepath.Join(t.TempDir(), "hub.backup")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); err != nil {
		t.Fatalf("Check: %v", err)
	}

	// A fresh node, possibly of another name, takes the backup.
	dst := testConfig(t, t.TempDir(), "hub-2")
	got, err := Restore(bytes.NewReader(data), dst)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if *got != *m {
		t.Errorf("Restore returned manifest %+v, want %+v", got, m)
	}
	filetest.Mode(t, filepath.Join(dst.CADir(), "root.key"), 0o600)
	filetest.Mode(t, filepath.Join(dst.CADir(), "root.crt"), 0o600)
	filetest.Mode(t, dst.KEKPath(), 0o600)
	if a, b := readFile(t, src.cfg.KEKPath()), readFile(t, dst.KEKPath()); !bytes.Equal(a, b) {
		t.Error("the restored cluster key is not the backed-up one")
	}
	restoredCA, created, err := ca.LoadOrCreate(dst.CADir(), dst.TD(), dst.CA.RootTTL)
	if err != nil || created {
		t.Fatalf("restored CA: created=%v, %v", created, err)
	}
	if restoredCA.Fingerprint() != src.ca.Fingerprint() {
		t.Error("restored CA is not the backed-up one")
	}
	if left := leftovers(t, dst.DataDir, ".restore-"); len(left) > 0 {
		t.Errorf("Restore left %v", left)
	}
	if !cluster.HasState(dst.RaftDir()) {
		t.Fatal("Restore seeded no raft state")
	}

	// What `serve` does next: open an empty state and start raft, which restores the seeded snapshot.
	state, err := fsm.Open(dst.StatePath(), discard())
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	c := startCluster(t, dst, restoredCA, state)
	defer c.Shutdown()
	orgs, err := state.Orgs()
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, o := range orgs {
		codes = append(codes, o.Code)
	}
	if !slices.Equal(codes, src.orgs) {
		t.Errorf("restored orgs %v, want %v", codes, src.orgs)
	}
	if state.AppliedIndex() != m.Index {
		t.Errorf("restored applied index %d, want %d", state.AppliedIndex(), m.Index)
	}
	if err := c.Apply(&fsm.OrgAdd{Code: "ndc", NameZh: "x", NameEn: "x", Type: "other", Now: time.Now()}); err != nil {
		t.Errorf("apply on the restored node: %v", err)
	}
}

// startCluster starts the restored node's raft as server.New does and waits until it leads.
func startCluster(t *testing.T, cfg config.Config, c *ca.CA, state *fsm.FSM) *cluster.Cluster {
	t.Helper()
	id, err := fedid.Hub(c.TrustDomain(), cfg.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.NewNodeSource(c, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubOnly := fedid.Authorizer(c.TrustDomain(), fedid.KindHub, nil)
	cl, err := cluster.New(cluster.Config{
		NodeID: cfg.NodeID, Listen: cfg.Raft.Listen, Advertise: cfg.Raft.Advertise, Dir: cfg.RaftDir(), Bootstrap: true,
		ServerTLS: tlsconfig.MTLSServerConfig(node, c.Bundle(), hubOnly), ClientTLS: tlsconfig.MTLSClientConfig(node, c.Bundle(), hubOnly),
		SnapshotInterval: time.Hour, SnapshotThreshold: 1 << 20, Log: discard(),
	}, state)
	if err != nil {
		t.Fatal(err)
	}
	// Raft's default timeouts make a one-node election take one to two seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitLeader(ctx); err != nil {
		cl.Shutdown()
		t.Fatal(err)
	}
	if err := cl.Barrier(10 * time.Second); err != nil {
		cl.Shutdown()
		t.Fatal(err)
	}
	return cl
}

func TestRestoreOnlyOntoAFreshNode(t *testing.T) {
	data, _ := newSource(t).backup(t)
	write := func(path string, b []byte) func(cfg config.Config) error {
		return func(cfg config.Config) error {
			full := filepath.Join(cfg.DataDir, path)
			if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
				return err
			}
			return os.WriteFile(full, b, 0o600)
		}
	}
	tests := []struct {
		name    string
		setup   func(cfg config.Config) error
		wantErr string // empty: the restore goes ahead
	}{
		{"raft log", write("raft/wal/00000000000000000001-0000000000000000.wal", []byte("x")), "already holds raft state"},
		{"raft snapshot", write("raft/snapshots/2-11-1700000000000/meta.json", []byte("{}")), "already holds raft state"},
		{"state database", write("state.db", []byte("x")), "state.db exists"},
		{"CA key", write("ca/root.key", []byte("x")), "root.key exists"},
		// Other things in the data directory are no hub: an operator's files, empty raft directories.
		{"unrelated files", write("operator/notes.txt", []byte("x")), ""},
		{"empty raft dirs", func(cfg config.Config) error {
			return os.MkdirAll(filepath.Join(cfg.RaftDir(), "wal"), 0o700)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), "hub-1")
			if err := tt.setup(cfg); err != nil {
				t.Fatal(err)
			}
			before := tree(t, cfg.DataDir)
			_, err := Restore(bytes.NewReader(data), cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Restore: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "fresh node") {
				t.Fatalf("Restore = %v, want a refusal mentioning %q", err, tt.wantErr)
			}
			// A refusal touches nothing: the node that was there stays as it was.
			if after := tree(t, cfg.DataDir); !slices.Equal(before, after) {
				t.Errorf("refused restore changed the data dir:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestRestoreRefusesBadBackups(t *testing.T) {
	src := newSource(t)
	good, m := src.backup(t)
	other := newSource(t) // another federation's CA

	tests := []struct {
		name    string
		data    func(t *testing.T) []byte
		wantErr string
	}{
		{"empty", func(t *testing.T) []byte { return nil }, "not gzip"},
		{"not gzip", func(t *testing.T) []byte { return []byte("this is no backup") }, "not gzip"},
		{"gzip but not tar", func(t *testing.T) []byte { return gzipped(t, bytes.Repeat([]byte("x"), 2000)) }, "backup is truncated or damaged: reading the first entry's header"},
		// A cut-off download says so, and what was being read.
		{"truncated in half", func(t *testing.T) []byte { return good[:len(good)/2] }, "backup is truncated or damaged: reading state.db: unexpected EOF"},
		{"truncated near the end", func(t *testing.T) []byte { return good[:len(good)-64] }, "backup is truncated or damaged"},
		// The gzip trailer comes after the end of the tar archive; only reading it checks the CRC and length.
		{"gzip trailer missing", func(t *testing.T) []byte { return good[:len(good)-8] }, "backup is truncated or damaged: reading the end of the gzip stream: unexpected EOF"},
		{"gzip checksum wrong", func(t *testing.T) []byte {
			b := bytes.Clone(good)
			b[len(b)-8] ^= 0xff
			return b
		}, "backup is truncated or damaged: reading the end of the gzip stream: gzip: invalid checksum"},
		{"gzip length wrong", func(t *testing.T) []byte {
			b := bytes.Clone(good)
			b[len(b)-1] ^= 0xff
			return b
		}, "gzip: invalid checksum"},
		{"trailing garbage", func(t *testing.T) []byte { return append(bytes.Clone(good), "junk"...) }, "backup is truncated or damaged"},
		{"no manifest", func(t *testing.T) []byte { return rebuild(t, good, without(manifestName)) }, "no manifest of a known format"},
		{"manifest not JSON", func(t *testing.T) []byte {
			return rebuild(t, good, replace(manifestName, []byte("{not json")))
		}, "backup manifest"},
		{"manifest of a future format", func(t *testing.T) []byte {
			return rebuild(t, good, editManifest(t, func(m *Manifest) { m.Format = 2 }))
		}, "no manifest of a known format"},
		{"other trust domain", func(t *testing.T) []byte {
			return rebuild(t, good, editManifest(t, func(m *Manifest) { m.TrustDomain = "other.test" }))
		}, `trust domain "other.test"`},
		{"manifest index disagrees with the state", func(t *testing.T) []byte {
			return rebuild(t, good, editManifest(t, func(m *Manifest) { m.Index++ }))
		}, "index"},
		{"no state", func(t *testing.T) []byte { return rebuild(t, good, without(stateName)) }, "lacks state.db"},
		{"no CA certificate", func(t *testing.T) []byte { return rebuild(t, good, without(rootCertName)) }, "lacks ca/root.crt"},
		{"no CA key", func(t *testing.T) []byte { return rebuild(t, good, without(rootKeyName)) }, "lacks ca/root.key"},
		{"unexpected entry", func(t *testing.T) []byte {
			return rebuild(t, good, func(es []entry) []entry { return append(es, entry{"../../etc/cron.d/x", []byte("x")}) })
		}, `unexpected entry "../../etc/cron.d/x"`},
		{"state entry twice", func(t *testing.T) []byte {
			return rebuild(t, good, func(es []entry) []entry { return append(es, es[1]) })
		}, "backup holds state.db twice"},
		{"state not a database", func(t *testing.T) []byte {
			return rebuild(t, good, replace(stateName, bytes.Repeat([]byte("junk"), 1024)))
		}, "not a hub state database"},
		// serve would fail to load these; restore refuses them before installing anything.
		{"CA key is junk", func(t *testing.T) []byte {
			return rebuild(t, good, replace(rootKeyName, []byte("junk")))
		}, "backup holds no usable CA in ca/root.crt and ca/root.key: CA key: "},
		{"CA key cut off", func(t *testing.T) []byte {
			return rebuild(t, good, func(es []entry) []entry {
				i := slices.IndexFunc(es, func(e entry) bool { return e.name == rootKeyName })
				es[i].data = es[i].data[:len(es[i].data)/2]
				return es
			})
		}, "no usable CA"},
		{"CA certificate is junk", func(t *testing.T) []byte {
			return rebuild(t, good, replace(rootCertName, []byte("junk")))
		}, "no usable CA in ca/root.crt and ca/root.key: CA certificate: "},
		{"CA key of another CA", func(t *testing.T) []byte {
			otherData, _ := other.backup(t)
			i := slices.IndexFunc(entries(t, otherData), func(e entry) bool { return e.name == rootKeyName })
			return rebuild(t, good, replace(rootKeyName, entries(t, otherData)[i].data))
		}, "does not belong to the key"},
		{"CA certificate not a CA", func(t *testing.T) []byte {
			id, err := fedid.Hub(src.ca.TrustDomain(), "hub-9")
			if err != nil {
				t.Fatal(err)
			}
			certs, _, err := src.ca.Issue(id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw})
			return rebuild(t, good, replace(rootCertName, leaf))
		}, "is not a CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), "hub-1")
			_, err := Restore(bytes.NewReader(tt.data(t)), cfg)
			if err == nil {
				t.Fatal("Restore accepted a bad backup")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Restore = %q, want it to mention %q", err, tt.wantErr)
			}
			// Nothing half-restored: no CA, no state, no raft state, no temporary files.
			for _, p := range []string{filepath.Join(cfg.CADir(), "root.key"), filepath.Join(cfg.CADir(), "root.crt"), cfg.StatePath()} {
				if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s exists after a refused restore", p)
				}
			}
			if cluster.HasState(cfg.RaftDir()) {
				t.Error("raft state exists after a refused restore")
			}
			if left := leftovers(t, cfg.DataDir, ".restore-"); len(left) > 0 {
				t.Errorf("refused restore left %v", left)
			}
			// And so the operator can simply try again with a good file.
			got, err := Restore(bytes.NewReader(good), cfg)
			if err != nil {
				t.Fatalf("restore of the good backup after a refused one: %v", err)
			}
			if got.Index != m.Index {
				t.Errorf("restored index %d, want %d", got.Index, m.Index)
			}
		})
	}
}

// TestRestoreSeedFailureKeepsCA checks the documented order: the CA goes in place before raft is seeded,
// so a restore that fails at the seed leaves a node that a second restore refuses rather than mixing two
// backups.
func TestRestoreSeedFailureKeepsCA(t *testing.T) {
	data, _ := newSource(t).backup(t)
	cfg := testConfig(t, t.TempDir(), "hub-1")
	// A file where the raft directory should be: HasState sees nothing, the seed cannot make its dir.
	if err := os.WriteFile(cfg.RaftDir(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(bytes.NewReader(data), cfg)
	if err == nil || !strings.Contains(err.Error(), "seed raft") {
		t.Fatalf("Restore = %v, want a seed failure", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.CADir(), "root.key")); err != nil {
		t.Fatalf("CA key not in place after a seed failure: %v", err)
	}
	if err := os.Remove(cfg.RaftDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bytes.NewReader(data), cfg); err == nil || !strings.Contains(err.Error(), "fresh node") {
		t.Fatalf("second restore = %v, want a refusal", err)
	}
}

func TestCheck(t *testing.T) {
	good, _ := newSource(t).backup(t)
	tests := []struct {
		name    string
		data    []byte
		wantErr string // empty: Check passes
	}{
		{"good", good, ""},
		{"empty", nil, "EOF"},
		{"not gzip", []byte("this is no backup"), "gzip"},
		{"truncated in half", good[:len(good)/2], "unexpected EOF"},
		{"gzip trailer missing", good[:len(good)-8], "unexpected EOF"},
		{"trailing garbage", append(bytes.Clone(good), "junk"...), "backup is truncated or damaged"},
		{"entry twice", rebuild(t, good, func(es []entry) []entry { return append(es, es[1]) }), "backup holds state.db twice"},
		{"gzip checksum wrong", func() []byte { b := bytes.Clone(good); b[len(b)-8] ^= 0xff; return b }(), "checksum"},
		{"no CA key", rebuild(t, good, without(rootKeyName)), "lacks ca/root.key"},
		{"no manifest", rebuild(t, good, without(manifestName)), "lacks manifest.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hub.backup")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := Check(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	if err := Check(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Check of a missing file: %v", err)
	}
}

func TestWriteWithoutCAKey(t *testing.T) {
	src := newSource(t)
	if err := os.Remove(filepath.Join(src.cfg.CADir(), "root.key")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Write(&buf, src.cfg, src.state); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Write without the CA key: %v", err)
	}
	if left := leftovers(t, src.cfg.DataDir, ".backup-"); len(left) > 0 {
		t.Errorf("failed Write left %v", left)
	}
	// What did go out must not pass for a backup: the CLI checks the file it received.
	path := filepath.Join(t.TempDir(), "partial.backup")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); err == nil {
		t.Error("Check passed the output of a failed Write")
	}
}

type entry struct {
	name string
	data []byte
}

func entries(t *testing.T, backup []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(backup))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h.Name, b})
	}
}

// rebuild makes a new, well-formed archive from backup's entries as edit leaves them.
func rebuild(t *testing.T, backup []byte, edit func([]entry) []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range edit(entries(t, backup)) {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func without(name string) func([]entry) []entry {
	return func(es []entry) []entry {
		return slices.DeleteFunc(es, func(e entry) bool { return e.name == name })
	}
}

func replace(name string, data []byte) func([]entry) []entry {
	return func(es []entry) []entry {
		for i := range es {
			if es[i].name == name {
				es[i].data = data
			}
		}
		return es
	}
}

func editManifest(t *testing.T, edit func(*Manifest)) func([]entry) []entry {
	return func(es []entry) []entry {
		for i := range es {
			if es[i].name != manifestName {
				continue
			}
			var m Manifest
			if err := json.Unmarshal(es[i].data, &m); err != nil {
				t.Fatal(err)
			}
			edit(&m)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			es[i].data = b
		}
		return es
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// leftovers lists the entries of dir whose names start with prefix.
func leftovers(t *testing.T, dir, prefix string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		if strings.HasPrefix(d.Name(), prefix) {
			out = append(out, d.Name())
		}
	}
	return out
}

// tree lists every path under dir with its size, to compare a directory before and after.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, fmt.Sprintf("%s %v %d", rel, info.Mode(), info.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
