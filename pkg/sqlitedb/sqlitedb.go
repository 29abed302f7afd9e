// Package sqlitedb opens the SQLite files the hub and the connectors keep their state in, all one way:
// private to their user, WAL journal (reads beside a writer), synchronous=NORMAL, and a busy timeout for a
// lock held by another process (an operator's `audit verify`).
package sqlitedb

import (
	"database/sql"
	"errors"
	"os"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver
)

// Options are what differs between the databases.
type Options struct {
	// Immediate starts every transaction with BEGIN IMMEDIATE, taking the write lock at once, so that a
	// transaction that reads before it writes cannot fail on a lock upgrade.
	Immediate bool
	// ForeignKeys enforces foreign keys.
	ForeignKeys bool
	// SecureDelete overwrites deleted content with zeros, so a value cleared from a row (a sealed ID)
	// does not linger in free pages.
	SecureDelete bool
	// OneConn keeps a single connection: writers in this process then queue for it in Go, where the next
	// starts the moment the lock is free, instead of sleeping in SQLite's busy handler (1, 2, 5, 10 ms …
	// between tries; measured: the main cause of the tail latency of small exchanges).
	OneConn bool
}

// Open opens (creating it, mode 0600) the database at path.
func Open(path string, o Options) (*sql.DB, error) {
	// SQLite creates the file with the process umask and gives the -wal and -shm files the database's
	// mode; making it 0600 first keeps all three private.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	db, err := sql.Open("sqlite3", DSN(path, o))
	if err != nil {
		return nil, err
	}
	if o.OneConn {
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
	}
	return db, nil
}

// DSN is the go-sqlite3 URI for path. The path is escaped because SQLite decodes %XX in URIs, and '?' and
// '#' would end the path.
func DSN(path string, o Options) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	q := "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000"
	if o.ForeignKeys {
		q += "&_foreign_keys=on"
	}
	if o.SecureDelete {
		q += "&_secure_delete=on"
	}
	if o.Immediate {
		q += "&_txlock=immediate"
	} else {
		q += "&_txlock=deferred"
	}
	return "file:" + esc + q
}
