package filetest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteTreeAndMode(t *testing.T) {
	dir := t.TempDir()
	WriteTree(t, dir, map[string][]byte{"sub/": nil, "a.txt": []byte("a")})
	Mode(t, filepath.Join(dir, "sub"), 0o700)
	Mode(t, filepath.Join(dir, "a.txt"), 0o600)
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "a" {
		t.Fatalf("a.txt: %q %v", b, err)
	}
	// Mode must fail on a wrong mode: run it against a recorder.
	var rec recorder
	Mode(&rec, filepath.Join(dir, "a.txt"), 0o644)
	if !rec.failed {
		t.Fatal("Mode passed a 0600 file as 0644")
	}
}

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatal(...any)          { r.failed = true }
