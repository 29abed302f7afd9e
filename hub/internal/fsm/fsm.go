// Package fsm is the hub's replicated state machine: the registry of organisations, connectors, join tokens
// and issued certificates, kept in SQLite and changed only by commands applied from the raft log.
package fsm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/mattn/go-sqlite3"
	"github.com/mydatafed/mydata/pkg/sqlitedb"
)

// FSM applies commands to the SQLite database and answers reads from it.
type FSM struct {
	db   *sql.DB
	path string
	log  *slog.Logger

	lookups lookups

	mu      sync.Mutex
	applied uint64
	// keyringVersion moves when the keyring may have changed (a keyring command, a restore), so that the
	// keyring's decrypted copy knows to reload.
	keyringVersion uint64
	// changed is closed and replaced whenever the directory version moves, to wake long-polls.
	changed chan struct{}
	// appliedCh is closed and replaced whenever entries are applied, to wake writes waiting for their entry.
	appliedCh chan struct{}
}

// Open opens (or creates) the state database at path.
func Open(path string, log *slog.Logger) (*FSM, error) {
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	f := &FSM{db: db, path: path, log: log, changed: make(chan struct{}), appliedCh: make(chan struct{})}
	if err := f.loadApplied(); err != nil {
		db.Close()
		return nil, err
	}
	return f, nil
}

func openDB(path string) (*sql.DB, error) {
	// Private (the state names citizens); WAL lets reads run beside the apply loop's writes, and
	// synchronous=NORMAL is safe here because the raft log is the durable record and entries after the
	// stored applied index are applied again on start.
	db, err := sqlitedb.Open(path, sqlitedb.Options{Immediate: true, ForeignKeys: true, SecureDelete: true})
	if err != nil {
		return nil, err
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("state schema: %w", err)
	}
	return db, nil
}

// Close closes the database.
func (f *FSM) Close() error { return f.db.Close() }

func (f *FSM) loadApplied() error {
	var v int64
	err := f.db.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaApplied).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read applied index: %w", err)
	}
	f.mu.Lock()
	f.applied = uint64(v)
	close(f.appliedCh) // a restore moves the applied index too
	f.appliedCh = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// AppliedIndex is the index of the last raft entry in the database.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// AppliedSignal returns a channel that is closed when entries are next applied.
func (f *FSM) AppliedSignal() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appliedCh
}

// Changed returns a channel that is closed at the next change of the directory.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *FSM) notify() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// ignorable marks a command type that an older hub may skip; every type we have today changes state that
// later commands depend on, so none carries it yet.
const ignorable = 0x80

// Apply applies one raft log entry. It panics on what can only be a bug or a broken disk, because a node
// that skipped an entry would silently diverge from the others.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies the entries raft commits together in one SQLite transaction (raft.BatchingFSM):
// under load the leader commits many entries at once, and a transaction for each was most of the apply
// loop's cost. It panics like Apply.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	applied := f.AppliedIndex()
	var (
		tx                     *sql.Tx
		last                   uint64
		dirChanged, invalidate bool
		keyring                bool
	)
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if l.Index <= applied {
			out[i] = Result{} // already in the database from before a restart
			continue
		}
		t, h := f.handler(l)
		if tx == nil {
			var err error
			if tx, err = f.db.Begin(); err != nil {
				panic(fmt.Sprintf("fsm: begin: %v", err))
			}
		}
		last = l.Index
		out[i] = Result{}
		if h == nil {
			continue // an unknown command marked ignorable: handler has logged it
		}
		res, changed, err := h(tx, l.Data[2:])
		if err != nil {
			_ = tx.Rollback()
			panic(fmt.Sprintf("fsm: apply entry %d (type %d): %v", l.Index, t, err))
		}
		if changed {
			dirChanged = true
			if err := setMeta(tx, metaDirectory, l.Index); err != nil {
				panic(fmt.Sprintf("fsm: directory version: %v", err))
			}
		}
		invalidate = invalidate || registry[t&^ignorable].effect == dropsLookups
		keyring = keyring || t&^ignorable == TypeKeyringAdd || t&^ignorable == TypeKeyringPurge || wrapsKeyring(t, l.Data)
		out[i] = res
	}
	if tx == nil {
		return out
	}
	if err := setMeta(tx, metaApplied, last); err != nil {
		panic(fmt.Sprintf("fsm: applied index: %v", err))
	}
	if err := tx.Commit(); err != nil {
		panic(fmt.Sprintf("fsm: commit entries up to %d: %v", last, err))
	}
	if invalidate {
		f.lookups.invalidate()
	}
	f.mu.Lock()
	f.applied = last
	if keyring {
		f.keyringVersion = last
	}
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.mu.Unlock()
	if dirChanged {
		f.notify()
	}
	return out
}

// handler finds the handler of a command entry; nil for an unknown command marked ignorable. It panics on
// an entry this hub cannot apply.
func (f *FSM) handler(l *raft.Log) (Type, handler) {
	if len(l.Data) < 2 {
		panic(fmt.Sprintf("fsm: entry %d is %d bytes, too short for a command", l.Index, len(l.Data)))
	}
	t, version := Type(l.Data[0]), l.Data[1]
	e, known := registry[t&^ignorable]
	if !known || version > payloadV1 {
		if t&ignorable != 0 {
			f.log.Warn("skipping unknown ignorable command; upgrade this hub", "type", t, "version", version, "index", l.Index)
			return t, nil
		}
		panic(fmt.Sprintf("fsm: entry %d has command type %d version %d, which this hub does not know: upgrade it", l.Index, t, version))
	}
	return t, e.apply
}

type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func setMeta(db execer, key string, value uint64) error {
	_, err := db.Exec(`INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, int64(value))
	return err
}

// Snapshot copies the database with SQLite's online backup into a file beside it; raft persists that file
// while later entries are applied to the live database.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".snapshot-*.db")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	if err := backupFile(f.db, tmp.Name(), toFile); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &snapshot{path: tmp.Name()}, nil
}

// Restore replaces the database with a snapshot's, using the online backup in the other direction so that
// open connections stay valid.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".restore-*.db")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, rc); err != nil {
		tmp.Close()
		return fmt.Errorf("restore: read snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := backupFile(f.db, tmp.Name(), fromFile); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// A snapshot of an earlier release brings its schema with it.
	if err := migrate(f.db); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := f.loadApplied(); err != nil {
		return err
	}
	f.mu.Lock()
	f.keyringVersion = f.applied
	f.mu.Unlock()
	f.lookups.invalidate()
	f.notify()
	return nil
}

type direction int

const (
	toFile direction = iota
	fromFile
)

// backupFile copies the live database to the SQLite file at path, or the file into the live database.
func backupFile(live *sql.DB, path string, dir direction) error {
	ctx := context.Background()
	other, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		return err
	}
	defer other.Close()
	oc, err := other.Conn(ctx)
	if err != nil {
		return err
	}
	defer oc.Close()
	lc, err := live.Conn(ctx)
	if err != nil {
		return err
	}
	defer lc.Close()
	return lc.Raw(func(liveRaw any) error {
		return oc.Raw(func(otherRaw any) error {
			src, dst := liveRaw.(*sqlite3.SQLiteConn), otherRaw.(*sqlite3.SQLiteConn)
			if dir == fromFile {
				src, dst = dst, src
			}
			b, err := dst.Backup("main", src, "main")
			if err != nil {
				return err
			}
			if _, err := b.Step(-1); err != nil {
				b.Close()
				return err
			}
			return b.Finish()
		})
	})
}

type snapshot struct{ path string }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	f, err := os.Open(s.path)
	if err != nil {
		sink.Cancel()
		return err
	}
	defer f.Close()
	if _, err := io.Copy(sink, f); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() { os.Remove(s.path) }

// BackupTo writes a consistent copy of the database to path, which must not exist yet, and returns the raft
// index the copy holds.
func (f *FSM) BackupTo(path string) (uint64, error) {
	if err := backupFile(f.db, path, toFile); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	return AppliedIndexOf(path)
}

// AppliedIndexOf reads the applied raft index stored in the state database file at path.
func AppliedIndexOf(path string) (uint64, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var v int64
	if err := db.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaApplied).Scan(&v); err != nil {
		return 0, fmt.Errorf("%s is not a hub state database: %w", path, err)
	}
	return uint64(v), nil
}
