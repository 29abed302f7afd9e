package exchange

// Results of POST /v1/exchanges larger than exchange.spill_threshold wait for the SP's application in a
// file under data_dir/spill instead of in memory: a 1 GiB dataset held in memory (and base64 in a JSON
// answer) took the connector to 3.8 GiB. The file holds the content sealed with AES-256-GCM in 64 KiB
// chunks under a key made for that file and kept only in this process's memory, so what is on disk is
// unreadable to anyone who copies it and once the process is gone. A file is removed when its content has
// been read to the end, when the exchange is dropped after exchange.keep, at shutdown, and, left over from a
// process that did not get to remove it, at start.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

const (
	// spillChunk is the plaintext size of one sealed chunk of a spill file (the last may be shorter).
	spillChunk = 64 << 10
	// spillPrefix names spill files, so that the start-up clean-up removes nothing else.
	spillPrefix = "spill-"
)

// spillNonce is chunk i's nonce: its index, and in the last byte whether it is the last chunk, so that a
// file cut at a chunk boundary, or chunks swapped, fail to open.
func spillNonce(nonce []byte, i int64, final bool) {
	clear(nonce)
	binary.BigEndian.PutUint64(nonce[:8], uint64(i))
	if final {
		nonce[11] = 1
	}
}

// spillFile is one result on disk and the only copy of its key.
type spillFile struct {
	path   string
	aead   cipher.AEAD
	size   int64 // plaintext bytes
	sealed int64 // bytes on disk
	chunks int64
	// onRemove, if set, is called once, when the file is removed.
	onRemove func()

	mu      sync.Mutex
	removed bool
}

// remove deletes the file; the key goes with the spillFile once nothing refers to it.
func (f *spillFile) remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return nil
	}
	f.removed = true
	if f.onRemove != nil {
		f.onRemove()
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// open opens the file for reading, unless it has been removed.
func (f *spillFile) open() (*spillReader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return nil, os.ErrNotExist
	}
	fd, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	return &spillReader{f: f, fd: fd, sealed: make([]byte, spillChunk+f.aead.Overhead()), nonce: make([]byte, f.aead.NonceSize())}, nil
}

// spillReader reads a spill file's plaintext, chunk by chunk.
type spillReader struct {
	f      *spillFile
	fd     *os.File
	next   int64
	sealed []byte
	nonce  []byte
	plain  []byte // opened and not yet read
}

func (r *spillReader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.next == r.f.chunks {
			return 0, io.EOF
		}
		n, err := io.ReadFull(r.fd, r.sealed)
		final := r.next == r.f.chunks-1
		if err != nil && !(final && errors.Is(err, io.ErrUnexpectedEOF)) && !(final && errors.Is(err, io.EOF)) {
			return 0, fmt.Errorf("spill file chunk %d: %w", r.next, err)
		}
		spillNonce(r.nonce, r.next, final)
		// Opened in place: the plaintext overwrites the ciphertext in r.sealed.
		if r.plain, err = r.f.aead.Open(r.sealed[:0], r.nonce, r.sealed[:n], nil); err != nil {
			return 0, fmt.Errorf("spill file chunk %d does not open: %w", r.next, err)
		}
		r.next++
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

func (r *spillReader) Close() error {
	clear(r.sealed)
	return r.fd.Close()
}

// spillWriter takes a delivery as it arrives: into memory up to threshold bytes, then, all of it, into a
// new spill file under dir.
type spillWriter struct {
	dir       string
	threshold int64

	mem    wipingBuffer
	file   *spillFile
	fd     *os.File
	chunk  []byte // plaintext of the chunk being filled
	sealed []byte
	nonce  []byte
}

func (w *spillWriter) Write(p []byte) (int, error) {
	if w.file == nil {
		if int64(len(w.mem.b)+len(p)) <= w.threshold {
			return w.mem.Write(p)
		}
		if err := w.create(); err != nil {
			return 0, err
		}
		held := w.mem.b
		w.mem.b = nil
		err := w.write(held)
		clear(held)
		if err != nil {
			return 0, err
		}
	}
	if err := w.write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *spillWriter) create() error {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
	block, err := aes.NewCipher(key)
	clear(key) // the cipher keeps its own expanded copy
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	fd, err := os.CreateTemp(w.dir, spillPrefix+"*")
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	w.fd, w.file = fd, &spillFile{path: fd.Name(), aead: aead}
	w.chunk = make([]byte, 0, spillChunk)
	w.sealed = make([]byte, 0, spillChunk+aead.Overhead())
	w.nonce = make([]byte, aead.NonceSize())
	return nil
}

// write seals p into the file, a full chunk at a time; the last, partial, chunk waits for finish.
func (w *spillWriter) write(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), spillChunk-len(w.chunk))
		w.chunk = append(w.chunk, p[:n]...)
		p = p[n:]
		w.file.size += int64(n)
		// A full chunk is sealed only once more content comes, since the last chunk is sealed as final.
		if len(w.chunk) == spillChunk && len(p) > 0 {
			if err := w.seal(false); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *spillWriter) seal(final bool) error {
	spillNonce(w.nonce, w.file.chunks, final)
	w.sealed = w.file.aead.Seal(w.sealed[:0], w.nonce, w.chunk, nil)
	clear(w.chunk)
	w.chunk = w.chunk[:0]
	if _, err := w.fd.Write(w.sealed); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	w.file.chunks++
	w.file.sealed += int64(len(w.sealed))
	return nil
}

// finish ends a complete delivery: it returns the content held in memory, or the spill file.
func (w *spillWriter) finish() ([]byte, *spillFile, error) {
	if w.file == nil {
		return w.mem.b, nil, nil
	}
	// write holds the last chunk back, and a file exists only once there is content: seal it as final.
	if err := w.seal(true); err != nil {
		w.abort()
		return nil, nil, err
	}
	if err := w.fd.Close(); err != nil {
		w.abort()
		return nil, nil, fmt.Errorf("spill: %w", err)
	}
	w.fd = nil
	return nil, w.file, nil
}

// abort drops a delivery that failed: the memory is overwritten and the file removed.
func (w *spillWriter) abort() {
	clear(w.mem.b)
	w.mem.b = nil
	clear(w.chunk)
	if w.fd != nil {
		w.fd.Close()
		w.fd = nil
	}
	if w.file != nil {
		_ = w.file.remove()
	}
}

// cleanSpillDir makes dir, or removes the spill files in it: left over from an earlier process, their keys
// are gone and nobody can read them. It returns how many it removed.
func cleanSpillDir(dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	old, err := filepath.Glob(filepath.Join(dir, spillPrefix+"*"))
	if err != nil {
		return 0, err
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}
