package peer

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// writesConn records each write to it as one.
type writesConn struct {
	net.Conn
	writes [][]byte
	err    error
}

func (w *writesConn) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestBatchConn: outside a batch every write goes through as it comes; within one, the writes are held
// and go out in order with one write at flush, in writes of at most batchMax; a socket error is flush's.
func TestBatchConn(t *testing.T) {
	w := &writesConn{}
	b := &batchConn{Conn: w}
	b.Write([]byte("hand"))
	b.Write([]byte("shake"))
	if len(w.writes) != 2 {
		t.Fatalf("outside a batch: %d socket writes, want 2", len(w.writes))
	}

	w.writes = nil
	b.start()
	var want []byte
	for i := range 6 {
		rec := bytes.Repeat([]byte{byte('a' + i)}, 16<<10+22)
		b.Write(rec)
		want = append(want, rec...)
	}
	if len(w.writes) != 0 {
		t.Fatalf("%d socket writes before flush", len(w.writes))
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 1 || !bytes.Equal(w.writes[0], want) {
		t.Fatalf("flush: %d socket writes, want 1 with every record in order", len(w.writes))
	}
	b.Write([]byte("close_notify"))
	if len(w.writes) != 2 {
		t.Fatal("a write after flush was held")
	}

	w.writes = nil
	b.start()
	want = want[:0]
	for i := range 3 * batchMax / (16 << 10) {
		rec := bytes.Repeat([]byte{byte(i)}, 16<<10)
		b.Write(rec)
		want = append(want, rec...)
	}
	b.flush()
	if got := bytes.Join(w.writes, nil); !bytes.Equal(got, want) || len(w.writes) != 3 {
		t.Fatalf("a batch of 3×batchMax: %d socket writes, in order %v", len(w.writes), bytes.Equal(got, want))
	}
	for _, p := range w.writes {
		if len(p) > batchMax {
			t.Fatalf("a socket write of %d bytes, more than batchMax", len(p))
		}
	}

	w.err = errors.New("connection reset")
	b.start()
	if _, err := b.Write([]byte("record")); err != nil {
		t.Fatalf("a held write failed: %v", err)
	}
	if err := b.flush(); !errors.Is(err, w.err) {
		t.Fatalf("flush: %v, want the socket's error", err)
	}
}
