package exchange

import (
	"bytes"
	"net/http/httptest"
	"testing"
	"time"
)

// TestStreamBatches: the streamed dataset reaches the application in order, streamBatch at a time, the
// rest at flush; the status line goes with the first bytes sent, the buffer grows only as bytes come, and
// what is held when a transfer fails (no flush) is never sent.
func TestStreamBatches(t *testing.T) {
	rec := httptest.NewRecorder()
	s := newStreamWriter(rec, time.Hour)
	defer s.stop()
	var want []byte
	const chunk = 64 << 10
	n := streamBatch/chunk + 1
	for i := range n {
		c := bytes.Repeat([]byte{byte('a' + i%26)}, chunk)
		if k, err := s.Write(c); err != nil || k != len(c) {
			t.Fatalf("write %d: %d %v", i, k, err)
		}
		want = append(want, c...)
		if i < n-1 && (s.sent() || rec.Body.Len() != 0) {
			t.Fatalf("after %d KiB, %d bytes were sent (started %v), want none before %d KiB", (i+1)*chunk>>10, rec.Body.Len(), s.sent(), streamBatch>>10)
		}
		if cap(s.buf) > streamBatch {
			t.Fatalf("after %d KiB the buffer has room for %d bytes, more than a batch", (i+1)*chunk>>10, cap(s.buf))
		}
	}
	if !s.sent() || rec.Body.Len() != streamBatch {
		t.Fatalf("after %d KiB: %d bytes sent, want the first %d", n*chunk>>10, rec.Body.Len(), streamBatch)
	}
	big := bytes.Repeat([]byte{'z'}, streamBatch+1)
	s.Write(big) // larger than a batch: what is held goes first, then it, unheld
	want = append(want, big...)
	if rec.Body.Len() != len(want) {
		t.Fatalf("after a write larger than a batch: %d bytes sent, want %d", rec.Body.Len(), len(want))
	}
	s.Write([]byte("tail"))
	want = append(want, "tail"...)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatal("the application did not get the stream's bytes in order")
	}

	small := httptest.NewRecorder()
	s = newStreamWriter(small, time.Hour)
	defer s.stop()
	s.Write(make([]byte, 4<<10))
	if cap(s.buf) > 4<<10 {
		t.Fatalf("a 4 KiB dataset took a %d-byte buffer", cap(s.buf))
	}

	failed := httptest.NewRecorder()
	s = newStreamWriter(failed, time.Hour)
	s.Write(make([]byte, 64<<10))
	s.stop()
	if s.sent() || failed.Body.Len() != 0 {
		t.Fatal("bytes of a transfer not yet flushed were sent")
	}
}

// TestStreamHold: bytes that wait hold for a batch to fill go to the application without one (a slow
// agency's data is not kept back), pushed through to the connection; after stop nothing is sent but by
// the caller.
func TestStreamHold(t *testing.T) {
	rec := httptest.NewRecorder()
	s := newStreamWriter(rec, 5*time.Millisecond)
	s.Write(bytes.Repeat([]byte{'a'}, 64<<10))
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		got, flushed := rec.Body.Len(), rec.Flushed
		s.mu.Unlock()
		if got == 64<<10 && flushed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("held bytes not sent after the hold: %d bytes sent, flushed %v", got, flushed)
		}
		time.Sleep(time.Millisecond)
	}
	if !s.sent() {
		t.Fatal("bytes went out before the status line")
	}

	s.Write([]byte("held"))
	s.stop()
	time.Sleep(30 * time.Millisecond)
	if rec.Body.Len() != 64<<10 {
		t.Fatalf("the timer wrote after stop: %d bytes sent", rec.Body.Len())
	}
	if err := s.flush(); err != nil || rec.Body.Len() != 64<<10+4 {
		t.Fatalf("flush after stop: %v, %d bytes sent", err, rec.Body.Len())
	}
}
