package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// The head file is the second anchor of the chain's end, outside the database, so that deleting the last
// row and fixing the meta row with SQL alone is still caught. It holds {"seq":N,"hash":"..."} padded with
// spaces to headSize bytes, so that the temporary file can be overwritten in place, without truncating it.

const headSize = 128

func readHead(path string) (head, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return head{}, err
	}
	if len(b) > headSize {
		return head{}, fmt.Errorf("head file %s is %d bytes, more than %d", path, len(b), headSize)
	}
	b = bytes.TrimRight(b, " \n")
	var h head
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return head{}, fmt.Errorf("head file %s: %w", path, err)
	}
	if dec.InputOffset() != int64(len(b)) || !isHash(h.Hash) || h.Seq < 0 {
		return head{}, fmt.Errorf("head file %s: malformed seq or hash", path)
	}
	return h, nil
}

// writeHead replaces the head file atomically, so that it holds the old head or the new one, never a mix:
// the new record goes into path.tmp, which is then swapped with path in one rename. The temporary name is
// fixed because writers hold the database's write lock while they call this. There is no fsync: see the
// package comment on durability.
func writeHead(path string, h head) error {
	rec, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(rec) >= headSize {
		return fmt.Errorf("head record is %d bytes", len(rec)) // cannot happen: seq has at most 20 digits
	}
	rec = append(rec, bytes.Repeat([]byte{' '}, headSize-1-len(rec))...)
	rec = append(rec, '\n')
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("write head file: %w", err)
	}
	_, err = f.WriteAt(rec, 0)
	if err == nil {
		// Only if someone else wrote the file: ours are always headSize bytes.
		if fi, serr := f.Stat(); serr != nil || fi.Size() != headSize {
			err = f.Truncate(headSize)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = publish(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write head file: %w", err)
	}
	return nil
}

// renameOver is the portable publish: a plain rename. It costs a new inode per append (hundreds of
// microseconds on ext4), which is why Linux swaps the two files instead.
func renameOver(tmp, path string) error { return os.Rename(tmp, path) }
