// Package backup writes and restores hub backups: a gzip'd tar of the state database (a consistent online
// copy), the root CA certificate and key, and a small manifest. A backup holds the CA key, so it is as
// secret as the hub's data directory.
package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/cluster"
	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
)

// Manifest describes a backup.
type Manifest struct {
	Format      int       `json:"format"`
	TrustDomain string    `json:"trust_domain"`
	Node        string    `json:"node"`
	Index       uint64    `json:"index"`
	CreatedAt   time.Time `json:"created_at"`
}

const (
	formatV1     = 1
	manifestName = "manifest.json"
	stateName    = "state.db"
	rootCertName = "ca/root.crt"
	rootKeyName  = "ca/root.key"
	// kekName is the cluster key-encryption key: without it the restored keyring (and with it the keyed
	// hashes citizens' records are found by) could not be read. Backups made before the keyring lack it.
	kekName = "keys/cluster.kek"
	// maxEntry bounds what restore reads of one archive entry.
	maxEntry = 1 << 30
)

// Write writes a backup of the running node to w.
func Write(w io.Writer, cfg config.Config, state *fsm.FSM) (*Manifest, error) {
	tmp, err := os.MkdirTemp(cfg.DataDir, ".backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dbPath := filepath.Join(tmp, stateName)
	index, err := state.BackupTo(dbPath)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Format: formatV1, TrustDomain: cfg.TrustDomain, Node: cfg.NodeID, Index: index, CreatedAt: time.Now().UTC()}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	add := func(name string, mode int64, r io.Reader, size int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, ModTime: m.CreatedAt, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	addFile := func(name, path string, mode int64) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		return add(name, mode, f, fi.Size())
	}
	if err := add(manifestName, 0o644, bytes.NewReader(mb), int64(len(mb))); err != nil {
		return nil, err
	}
	if err := addFile(stateName, dbPath, 0o600); err != nil {
		return nil, err
	}
	if err := addFile(rootCertName, filepath.Join(cfg.CADir(), "root.crt"), 0o644); err != nil {
		return nil, err
	}
	if err := addFile(rootKeyName, filepath.Join(cfg.CADir(), "root.key"), 0o600); err != nil {
		return nil, err
	}
	if err := addFile(kekName, cfg.KEKPath(), 0o600); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return m, gz.Close()
}

// Restore unpacks a backup into cfg's data directory, which must hold no hub yet, and seeds raft with the
// state so that the next `serve` starts a one-node cluster with every record of the backup. The whole
// backup is read and checked in a temporary directory first: a damaged or unusable backup leaves the data
// directory as it was.
func Restore(r io.Reader, cfg config.Config) (*Manifest, error) {
	if cluster.HasState(cfg.RaftDir()) {
		return nil, fmt.Errorf("%s already holds raft state: restore only onto a fresh node", cfg.DataDir)
	}
	for _, p := range []string{cfg.StatePath(), filepath.Join(cfg.CADir(), "root.key")} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("%s exists: restore only onto a fresh node", p)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.DataDir, ".restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// Entries unpack under their own names, so an error about one names it.
	for _, d := range []string{"ca", "keys"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o700); err != nil {
			return nil, err
		}
	}

	var m *Manifest
	files := map[string]string{}
	err = walk(r, func(h *tar.Header, r io.Reader) error {
		switch h.Name {
		case manifestName:
			var mm Manifest
			if err := json.NewDecoder(io.LimitReader(r, 1<<16)).Decode(&mm); err != nil {
				return fmt.Errorf("backup manifest: %w", err)
			}
			m = &mm
		case stateName, rootCertName, rootKeyName, kekName:
			// Cutting a larger entry short would restore part of it.
			if h.Size > maxEntry {
				return fmt.Errorf("backup's %s is %d bytes, more than the %d a restore takes", h.Name, h.Size, maxEntry)
			}
			dst := filepath.Join(tmp, filepath.FromSlash(h.Name))
			if err := extract(dst, r); err != nil {
				return err
			}
			files[h.Name] = dst
		default:
			return fmt.Errorf("backup holds an unexpected entry %q", h.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m == nil || m.Format != formatV1 {
		return nil, errors.New("backup has no manifest of a known format")
	}
	if m.TrustDomain != cfg.TrustDomain {
		return nil, fmt.Errorf("backup is of trust domain %q, but the config says %q", m.TrustDomain, cfg.TrustDomain)
	}
	for _, name := range []string{stateName, rootCertName, rootKeyName} {
		if files[name] == "" {
			return nil, fmt.Errorf("backup lacks %s", name)
		}
	}
	index, err := fsm.AppliedIndexOf(files[stateName])
	if err != nil {
		return nil, err
	}
	if index != m.Index {
		return nil, fmt.Errorf("backup state is at index %d but its manifest says %d", index, m.Index)
	}
	// Load the CA as `serve` will, so one that serve would refuse (unparsable, not a CA, key not the
	// certificate's) is refused before anything is installed. Both files are there, so this only loads.
	if _, _, err := ca.LoadOrCreate(filepath.Join(tmp, "ca"), cfg.TD(), cfg.CA.RootTTL); err != nil {
		return nil, fmt.Errorf("backup holds no usable CA in %s and %s: %w", rootCertName, rootKeyName, err)
	}
	// The CA goes in place first: a node started after a failed seed then has a CA but no raft state, and
	// a second restore attempt refuses clearly rather than mixing two backups.
	if err := os.MkdirAll(cfg.CADir(), 0o700); err != nil {
		return nil, err
	}
	if err := os.Rename(files[rootKeyName], filepath.Join(cfg.CADir(), "root.key")); err != nil {
		return nil, err
	}
	if err := os.Chmod(files[rootCertName], 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(files[rootCertName], filepath.Join(cfg.CADir(), "root.crt")); err != nil {
		return nil, err
	}
	if files[kekName] != "" {
		kek, err := os.ReadFile(files[kekName])
		if err != nil {
			return nil, err
		}
		if err := keyring.WriteKEK(cfg.KEKPath(), kek); err != nil {
			return nil, fmt.Errorf("backup's %s: %w", kekName, err)
		}
	}
	db, err := os.Open(files[stateName])
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := cluster.SeedSnapshot(cfg.RaftDir(), cfg.NodeID, cfg.Raft.Advertise, index, db); err != nil {
		return nil, fmt.Errorf("seed raft: %w", err)
	}
	return m, nil
}

// Check reads a backup file through to the end of its gzip stream, so a cut-off or damaged download is
// caught at once.
func Check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	seen := map[string]bool{}
	if err := walk(f, func(h *tar.Header, _ io.Reader) error {
		seen[h.Name] = true
		return nil
	}); err != nil {
		return err
	}
	for _, name := range []string{manifestName, stateName, rootCertName, rootKeyName} {
		if !seen[name] {
			return fmt.Errorf("backup lacks %s", name)
		}
	}
	return nil
}

// walk reads a backup from r through to the end of its gzip stream, handing each archive entry to visit, and
// refuses an entry that comes twice. The gzip CRC and length are checked only when the trailer is read, after
// the last entry, so whatever visit kept may be used only once walk has returned nil.
func walk(r io.Reader, visit func(h *tar.Header, r io.Reader) error) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("backup is not gzip: %w", err)
	}
	tr := tar.NewReader(gz)
	seen := map[string]bool{}
	what := "the first entry's header"
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return damaged(what, err)
		}
		if seen[h.Name] {
			return fmt.Errorf("backup holds %s twice", h.Name)
		}
		seen[h.Name] = true
		// visit's error may come from reading the entry (a damaged backup) or from its own work (a full disk,
		// say); the reader remembers a read error so that the two are told apart.
		er := &errReader{r: tr}
		if err := visit(h, er); err != nil {
			if er.err != nil {
				return damaged(h.Name, er.err)
			}
			return err
		}
		// What visit left unread still counts towards the checksum.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return damaged(h.Name, err)
		}
		what = "the header after " + h.Name
	}
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return damaged("the end of the gzip stream", err)
	}
	return nil
}

func damaged(what string, err error) error {
	return fmt.Errorf("backup is truncated or damaged: reading %s: %w", what, err)
}

// errReader remembers the first error other than io.EOF that reading r gave.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

func extract(dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
