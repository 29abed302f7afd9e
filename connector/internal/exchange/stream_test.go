package exchange

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// TestStreamBatches: the streamed dataset reaches the application in order, streamBatch at a time, the
// rest at flush; the status line goes with the first bytes sent, and what is held when a transfer fails
// (no flush) is never sent.
func TestStreamBatches(t *testing.T) {
	rec := httptest.NewRecorder()
	h := &headerOnFirstWrite{w: rec}
	var want []byte
	for i := range 5 {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
		if n, err := h.Write(chunk); err != nil || n != len(chunk) {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
		want = append(want, chunk...)
		if i < 3 && (h.started || rec.Body.Len() != 0) {
			t.Fatalf("after %d KiB, %d bytes were sent (started %v), want none before %d KiB", (i+1)*64, rec.Body.Len(), h.started, streamBatch>>10)
		}
	}
	if !h.started || rec.Body.Len() != streamBatch {
		t.Fatalf("after 320 KiB: %d bytes sent, want the first %d", rec.Body.Len(), streamBatch)
	}
	big := bytes.Repeat([]byte{'z'}, streamBatch+1)
	h.Write(big) // larger than a batch: what is held goes first, then it, unheld
	want = append(want, big...)
	if rec.Body.Len() != len(want) {
		t.Fatalf("after a write larger than a batch: %d bytes sent, want %d", rec.Body.Len(), len(want))
	}
	h.Write([]byte("tail"))
	want = append(want, "tail"...)
	if err := h.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatal("the application did not get the stream's bytes in order")
	}

	failed := httptest.NewRecorder()
	h = &headerOnFirstWrite{w: failed}
	h.Write(make([]byte, 64<<10))
	if h.started || failed.Body.Len() != 0 {
		t.Fatal("bytes of a transfer not yet flushed were sent")
	}
}
