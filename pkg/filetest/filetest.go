// Package filetest holds the file checks and fixtures that tests across the module share.
package filetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Mode fails the test unless path has the permission bits want.
func Mode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %o, want %o", filepath.Base(path), got, want)
	}
}

// WriteTree writes files under dir: a name ending in "/" is made a directory (0700), any other a file
// (0600) holding its bytes.
func WriteTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, data, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
