package sqlitedb

import (
	"path/filepath"
	"testing"

	"github.com/mydatafed/mydata/pkg/filetest"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		o       Options
		journal string
		fk      int
		maxOpen int
	}{
		{"defaults", "a.db", Options{}, "wal", 0, 0},
		{"one connection, foreign keys", "b.db", Options{OneConn: true, ForeignKeys: true, Immediate: true}, "wal", 1, 1},
		{"a path SQLite would read as a URI", "c?d#e%20.db", Options{}, "wal", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			db, err := Open(path, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`CREATE TABLE x (v INTEGER)`); err != nil {
				t.Fatal(err)
			}
			var journal string
			var fk int
			if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&journal); err != nil || journal != tt.journal {
				t.Errorf("journal_mode %q %v, want %q", journal, err, tt.journal)
			}
			if err := db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != tt.fk {
				t.Errorf("foreign_keys %d %v, want %d", fk, err, tt.fk)
			}
			if got := db.Stats().MaxOpenConnections; got != tt.maxOpen {
				t.Errorf("max open connections %d, want %d", got, tt.maxOpen)
			}
			filetest.Mode(t, path, 0o600) // the file at exactly this path: the name was not cut at ? or #
		})
	}
}
