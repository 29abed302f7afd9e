package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeySize is the size of the subject-hashing key LoadOrCreateKey makes, and the least SubjectHash accepts.
const KeySize = 32

// SubjectHash is what the log stores for a data subject: HMAC-SHA256 of the subject's id under the
// connector's own secret key, hex. A plain hash would not do: national ids are few enough to hash them all.
// The same subject gets the same hash in one connector's log, so one person's entries can be found, but
// different connectors' logs cannot be joined on it. It panics on a key shorter than KeySize, a programming
// error that would otherwise silently weaken every hash.
func SubjectHash(key []byte, subject string) string {
	if len(key) < KeySize {
		panic(fmt.Sprintf("audit.SubjectHash: key is %d bytes, want at least %d", len(key), KeySize))
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil))
}

// LoadOrCreateKey returns the subject-hashing key in the file at path, first making one (KeySize bytes from
// crypto/rand, mode 0600) if there is none. Losing the key only stops new entries matching old ones for the
// same person; the log still verifies. A key file that others can read, or of the wrong size, is an error.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := readKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("audit: make key: %w", err)
	}
	// Write it under a temporary name and link it into place, which fails if another process got there
	// first; then both use the one that won.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("audit: make key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("audit: make key: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return readKey(path)
		}
		return nil, fmt.Errorf("audit: make key: %w", err)
	}
	return key, nil
}

func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("audit: read key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: read key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("audit: key file %s has mode %04o: others can read it, want 0600", path, perm)
	}
	if fi.Size() != KeySize {
		return nil, fmt.Errorf("audit: key file %s is %d bytes, want %d", path, fi.Size(), KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := f.ReadAt(key, 0); err != nil {
		return nil, fmt.Errorf("audit: read key: %w", err)
	}
	return key, nil
}
